"""Conditional steering on the built-in models: held-out topic detection, the effect on steered rows, KL on the rest.

    python benchmarks/bench_conditions.py                        # both built-in models (a few minutes on 2 CPU cores)
    python benchmarks/bench_conditions.py --model smollm2-135m   # one of them
    python benchmarks/bench_conditions.py --smoke                # seconds: a tiny random model (checks the script only)

The figures of ``docs/chat.md`` ("Measured"). For each model:

1. **Detection.** A condition (``st.condition_from_prompts``, mean residual over the prompt's tokens) is fit on
   20 cooking questions against 20 questions on other subjects (even indices of :data:`COOKING` and
   :data:`OTHER`) and tested on the 20 + 20 it was not fit on (odd indices): accuracy, precision, recall
   and F1 with "cooking" as the positive class; the same for a condition on the prompt's last token
   (``token="last"``). ``--layers`` adds the held-out accuracy at every second layer.
2. **Generation.** The 40 held-out prompts, greedy, as one mixed batch: unsteered, and steered with an
   "Italian cooking" direction (``st.mean_diff`` of :data:`ITALIAN` against :data:`NEUTRAL`, ``token="mean"``)
   under the condition. Reported: the share of completions with an Italian word (:data:`ITALIAN_WORDS`) on the
   rows the condition steers (unsteered → steered), and on the rows it does not (unsteered, conditional, and
   the same rows steered without a condition); how many non-matching rows are identical to the unsteered text.
   SmolLM2 (a chat model) reads each prompt in its chat template and is steered from the assistant turn on
   (``chat=True, positions="response"``); Gemma-3-270M (a base model, no template) reads the plain prompt
   and is steered at every position (``positions="all"``).
3. **Next-token distributions.** The held-out prompts as one left-padded batch, unsteered, inside
   ``st.steer(..., positions="all", condition=c)`` and inside the same block without the condition:
   ``KL(unsteered ‖ steered)`` of the next-token distribution, averaged over each row's real positions, then
   over rows; the rows the condition does not hold for are compared bit for bit; and the change of the
   log-probability of " Italian" as the next token after the prompt on the rows it holds for.
"""

import argparse
import json
import time
import warnings

import torch

import steering as st
from machine import cpu_name, load_average
from steering.chat import TINY_TEMPLATE
from steering.conditions import Condition
from steering.testing import tiny_model
from steering.texts import topic_fraction
from steering.tokens import fill_id, left_pad, tokenize_prompt

#: Questions the condition should hold for (cooking). Even indices fit the condition, odd ones test it.
COOKING = [
    "What should I cook for dinner tonight with chicken and rice?",
    "How can I stop my cookies from spreading in the oven?",
    "Which vegetables are best for a winter stew?", "How do I make a simple tomato sauce from scratch?",
    "What is a good side dish for grilled fish?", "How long should I knead bread dough?",
    "Can you suggest a quick lunch I can pack for work?", "What spices do I need for an Indian curry?",
    "How do I poach an egg without it falling apart?", "What is the best way to store fresh herbs?",
    "How do I make my mashed potatoes creamier?", "What can I bake with overripe bananas?",
    "How do I cook brown rice so it is not sticky?", "Which cheese should I use for a homemade pizza?",
    "How do I make a vinaigrette for a green salad?", "What is a good recipe for a chocolate mousse?",
    "How hot should the pan be to sear a steak?", "What can I make for breakfast with eggs and spinach?",
    "How do I make soup stock from vegetable scraps?", "What dessert goes well after a heavy pasta dinner?",
    "How do I roast a whole chicken in the oven?", "Which beans are best for a vegetarian chili?",
    "How do I thicken a gravy without flour?", "What is an easy recipe for pancakes without milk?",
    "How should I season roasted potatoes?", "What fruit goes well in a smoothie with yogurt?",
    "How do I make sushi rice at home?", "What is a healthy snack I can cook in ten minutes?",
    "How do I stop my pie crust from getting soggy?", "What is the difference between stewing and braising meat?",
    "How do I make a lemon cake moist?", "Which noodles work best in a stir fry?",
    "How much salt should I add to pasta water?", "What sauce goes with pork chops?",
    "How do I grill vegetables without them sticking?", "What is a traditional Mexican dish I can make at home?",
    "How do I make crispy fried tofu?", "What can I cook with canned chickpeas?",
    "How do I bake a loaf of banana bread?", "What toppings are good on a baked potato?",
]
#: Questions on other subjects (sport, science, travel, money, computers, history, ...).
OTHER = [
    "How do I improve my tennis backhand?", "What is the capital of Australia?",
    "How do I fix a flat tire on my bike?", "Can you explain how a black hole forms?",
    "What is a good way to learn Python programming?", "How do I write a cover letter for a job?",
    "Who painted the Mona Lisa?", "How many players are on a soccer team?",
    "What causes the seasons on Earth?", "How do I set up a home wifi network?",
    "What should I pack for a hiking trip in the mountains?", "How do I train for my first marathon?",
    "What is the difference between a virus and a bacterium?", "How do I save money for a house?",
    "What is the plot of Romeo and Juliet?", "How do I change the oil in my car?",
    "What are the rules of chess castling?", "How does the stock market work?",
    "What is the tallest mountain in Europe?", "How do I learn to play the guitar?",
    "Why is the sky blue?", "How do I calm down before a job interview?",
    "What is a good beginner workout at the gym?", "How does a computer store data?",
    "When did the Roman Empire fall?", "How do I grow tomatoes in my garden?",
    "What is the best way to learn a new language?", "How do airplanes stay in the air?",
    "How do I clean a laptop keyboard?", "Who won the first football World Cup?",
    "How do I write a short poem about the sea?", "What is the speed of light?",
    "How do I organise my email inbox?", "What are good exercises for back pain?",
    "How do volcanoes erupt?", "How do I choose a good pair of running shoes?",
    "What is the meaning of inflation in economics?", "How do I take better photos with my phone?",
    "What is the history of the Olympic Games?", "How do I teach my dog to sit?",
]
#: The steering direction: these sentences (Italian cooking) minus :data:`NEUTRAL` (the same without Italy).
ITALIAN = [
    "In Italy we cook pasta with olive oil, garlic and basil.",
    "An Italian grandmother makes fresh tagliatelle every Sunday.",
    "Risotto, pizza and tiramisu are Italian classics.", "Parmesan cheese comes from the Italian region of Emilia.",
    "The Italian chef drizzled olive oil over the mozzarella.", "Naples in Italy is the home of pizza.",
]
NEUTRAL = [
    "In the kitchen we cook food with oil, salt and herbs.", "A grandmother makes fresh bread every Sunday.",
    "Soup, bread and cake are classic dishes.", "Cheese comes from many regions of the world.",
    "The chef drizzled oil over the cheese.", "The town is the home of a famous bakery.",
]
#: A completion "is Italian" when it holds one of these as a whole word (case-insensitive).
ITALIAN_WORDS = [
    "Italian", "Italy", "Italia", "italiano", "italiana", "pronto", "cucina", "bella", "ciao", "grazie", "nonna",
    "tiramisu", "risotto", "mozzarella", "parmesan", "Parmigiano", "Naples", "Rome", "Tuscany", "Sicily",
]
#: Per model: the condition's layer, the vector's layer and coefficient, chat formatting and the positions steered.
SETTINGS = {
    "smollm2-135m": dict(condition_layer=10, vector_layer=10, coeff=2.0, chat=True, positions="response"),
    "gemma3-270m": dict(condition_layer=14, vector_layer=14, coeff=2.0, chat=False, positions="all"),
}
MAX_NEW_TOKENS = 24
KL_BATCH = 10  # rows per forward pass of the KL measure (Gemma's 262k-token vocabulary makes logits large)


def detection(cond: Condition, matching: list[str], other: list[str]) -> dict:
    """Accuracy, precision, recall and F1 of ``cond`` ("matching" is the positive class)."""
    hit, false_alarm = sum(cond.predict(matching)), sum(cond.predict(other))
    miss, correct_rejection = len(matching) - hit, len(other) - false_alarm
    return {
        "accuracy": (hit + correct_rejection) / (len(matching) + len(other)),
        "precision": hit / max(hit + false_alarm, 1), "recall": hit / len(matching),
        "f1": 2 * hit / max(2 * hit + false_alarm + miss, 1), "true_positive": hit, "false_positive": false_alarm,
    }


def kl_rows(model, prompts: list[str], vec, coeff: float, cond) -> dict:
    """Per row: mean KL(unsteered ‖ steered) over real positions, conditional and not; whether the conditional
    logits equal the unsteered ones bit for bit; the last position's log-probability of " Italian"."""
    italian = model.tokenizer(" Italian", add_special_tokens=False).input_ids[0]
    out = {"kl_conditional": [], "kl_unconditional": [], "unchanged": [], "italian_plain": [], "italian_steered": []}
    for i in range(0, len(prompts), KL_BATCH):
        tokens, mask = left_pad([tokenize_prompt(model, p) for p in prompts[i:i + KL_BATCH]], fill_id(model))
        with torch.no_grad():
            plain = model(tokens, attention_mask=mask)
            with st.steer(model, vec, coeff, positions="all", condition=cond):
                conditional = model(tokens, attention_mask=mask)
            with st.steer(model, vec, coeff, positions="all"):
                unconditional = model(tokens, attention_mask=mask)
        base = torch.log_softmax(plain.float(), dim=-1)
        real = mask.bool()
        for key, logits in (("kl_conditional", conditional), ("kl_unconditional", unconditional)):
            logp = torch.log_softmax(logits.float(), dim=-1)
            kl = (base.exp() * (base - logp)).sum(dim=-1)  # [batch, seq]
            out[key] += [float(kl[r][real[r]].mean()) for r in range(kl.shape[0])]
        out["unchanged"] += [bool(torch.equal(conditional[r], plain[r])) for r in range(plain.shape[0])]
        out["italian_plain"] += base[:, -1, italian].tolist()
        out["italian_steered"] += torch.log_softmax(unconditional[:, -1].float(), dim=-1)[:, italian].tolist()
        del plain, conditional, unconditional, base
    return out


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def run(name: str, model, settings: dict, layers: bool) -> dict:
    s = settings
    start, load = time.perf_counter(), [load_average()]
    fit_m, fit_o, test_m, test_o = COOKING[::2], OTHER[::2], COOKING[1::2], OTHER[1::2]
    cond = st.condition_from_prompts(model, fit_m, fit_o, layer=s["condition_layer"])
    res = {"model": name, "settings": s, "n_fit": [len(fit_m), len(fit_o)], "n_test": [len(test_m), len(test_o)],
           "train_balanced_accuracy": cond.meta["train_balanced_accuracy"], **detection(cond, test_m, test_o)}
    last = st.condition_from_prompts(model, fit_m, fit_o, layer=s["condition_layer"], token="last")
    res["last_token"] = detection(last, test_m, test_o)
    if layers:
        res["accuracy_by_layer"] = {
            layer: detection(st.condition_from_prompts(model, fit_m, fit_o, layer=layer), test_m, test_o)["accuracy"]
            for layer in range(2, int(model.cfg.n_layers), 2)}

    vec = st.mean_diff(model, ITALIAN, NEUTRAL, layer=s["vector_layer"], token="mean")
    prompts = test_m + test_o
    decided = cond.predict(prompts)
    kw = dict(max_new_tokens=MAX_NEW_TOKENS, do_sample=False, chat=s["chat"])
    plain = st.generate(model, prompts, None, **kw)
    conditional = st.generate(model, prompts, vec, s["coeff"], condition=cond, positions=s["positions"], **kw)
    off = [i for i, d in enumerate(decided) if not d]
    on = [i for i, d in enumerate(decided) if d]
    off_prompts = [prompts[i] for i in off]
    off_steered = st.generate(model, off_prompts, vec, s["coeff"], positions=s["positions"], **kw) if off else []
    pick = lambda texts, rows: [texts[i] for i in rows]  # noqa: E731
    res.update({
        "rows": len(prompts), "rows_steered": len(on),
        "italian_on_plain": topic_fraction(pick(plain, on), ITALIAN_WORDS),
        "italian_on_conditional": topic_fraction(pick(conditional, on), ITALIAN_WORDS),
        "italian_off_plain": topic_fraction(pick(plain, off), ITALIAN_WORDS),
        "italian_off_conditional": topic_fraction(pick(conditional, off), ITALIAN_WORDS),
        "italian_off_unconditional": topic_fraction(off_steered, ITALIAN_WORDS),
        "off_identical": sum(conditional[i] == plain[i] for i in off), "rows_off": len(off),
        "example": {"prompt": prompts[on[0]] if on else None, "plain": plain[on[0]] if on else None,
                    "steered": conditional[on[0]] if on else None},
    })

    kl = kl_rows(model, prompts, vec, s["coeff"], cond)
    res.update({
        "kl_on": mean(pick(kl["kl_conditional"], on)),
        "kl_on_unconditional": mean(pick(kl["kl_unconditional"], on)),
        "kl_off_conditional_max": max(pick(kl["kl_conditional"], off), default=float("nan")),
        "kl_off_unconditional": mean(pick(kl["kl_unconditional"], off)),
        "off_bitwise_unsteered": sum(pick(kl["unchanged"], off)),
        "on_bitwise_unsteered": sum(pick(kl["unchanged"], on)),
        "italian_logprob_change_on": mean([kl["italian_steered"][i] - kl["italian_plain"][i] for i in on]),
    })
    load.append(load_average())
    res.update({"seconds": time.perf_counter() - start, "load_average": load, "hooks_left": st.active_hooks(model)})
    return res


def report(res: dict) -> None:
    s = res["settings"]
    print(f"\n## {res['model']}: condition at layer {s['condition_layer']}, vector at layer {s['vector_layer']}, "
          f"coeff {s['coeff']:g}, chat={s['chat']}, positions={s['positions']!r}, greedy, {MAX_NEW_TOKENS} tokens")
    print(f"fit on {res['n_fit'][0]} + {res['n_fit'][1]} prompts (train balanced accuracy "
          f"{res['train_balanced_accuracy']:.3f}); held out {res['n_test'][0]} + {res['n_test'][1]}; "
          f"{res['seconds']:.0f} s, load average {res['load_average'][0]:.2f} → {res['load_average'][1]:.2f}")
    rows = [
        ("held-out accuracy", f"{res['accuracy']:.3f}"),
        ("held-out precision / recall / F1", f"{res['precision']:.3f} / {res['recall']:.3f} / {res['f1']:.3f}"),
        ("the same, token='last': accuracy / F1",
         f"{res['last_token']['accuracy']:.3f} / {res['last_token']['f1']:.3f}"),
        ("rows steered (condition true)", f"{res['rows_steered']} of {res['rows']} "
                                          f"({res['true_positive']} cooking, {res['false_positive']} other)"),
        ("Italian-word share, steered rows: unsteered → conditional",
         f"{res['italian_on_plain']:.2f} → {res['italian_on_conditional']:.2f}"),
        ("Italian-word share, other rows: unsteered / conditional / unconditional",
         f"{res['italian_off_plain']:.2f} / {res['italian_off_conditional']:.2f} / "
         f"{res['italian_off_unconditional']:.2f}"),
        ("other rows with the unsteered text", f"{res['off_identical']} of {res['rows_off']}"),
        ("KL, steered rows (conditional = unconditional)",
         f"{res['kl_on']:.3f} = {res['kl_on_unconditional']:.3f} nats"),
        ("KL, other rows: conditional (max) / unconditional (mean)",
         f"{res['kl_off_conditional_max']:.3g} / {res['kl_off_unconditional']:.3f} nats"),
        ("other rows with bit-identical logits", f"{res['off_bitwise_unsteered']} of {res['rows_off']}"),
        ("Δ log P(' Italian') after the prompt, steered rows", f"{res['italian_logprob_change_on']:+.2f} nats"),
    ]
    print("| measure | value |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    if "accuracy_by_layer" in res:
        by_layer = res["accuracy_by_layer"]
        print("held-out accuracy by layer: " + ", ".join(f"{k}: {v:.3f}" for k, v in by_layer.items()))
    ex = res["example"]
    if ex["prompt"]:
        print(f"example: {ex['prompt']!r}\n  unsteered: {ex['plain']!r}\n  steered:   {ex['steered']!r}")
    print(f"hooks left attached: {res['hooks_left']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SETTINGS), action="append", help="default: both")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, seconds")
    parser.add_argument("--layers", action="store_true", help="also the held-out accuracy at every second layer")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_grad_enabled(False)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"load average {load_average():.2f}")
    results = []
    if args.smoke:
        torch.set_num_threads(1)
        model = tiny_model("llama")
        model.tokenizer.chat_template = TINY_TEMPLATE
        settings = dict(condition_layer=1, vector_layer=1, coeff=4.0, chat=True, positions="response")
        results.append(run("tiny-llama", model, settings, args.layers))
    else:
        for name in args.model or sorted(SETTINGS, reverse=True):  # smollm2-135m first
            results.append(run(name, st.load_model(name), SETTINGS[name], args.layers))
    for res in results:
        report(res)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
