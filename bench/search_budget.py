"""What `harness search legal --trials 30` costs, refit and registration included, on machines this one is not:
the estimate `harness search` prints before it starts, computed on paper for other machines.

    .venv/bin/python bench/search_budget.py [--task legal] [--trials 30]

The cost model is harness's own (`harness/estimates.py`: operations counted from the model's shape and the task's
token counts, over a machine's matmul rate times the share of it each kind of work reaches). Here the matmul rate
is given instead of measured:

- this machine, measured (the figure `harness search` uses);
- 2 AVX2-only cores: fp32, 68 GFLOP/s (measured on those machines with a 1024² fp32 matmul; README);
- one A100 80 GB and one H100 80 GB with Llama 3.1 8B: the bf16 matmul rates of `harness plan`'s table
  (harness/plan.py: about 90% and 70% of the datasheet peaks of 312 and 989 TFLOP/s, what large GEMMs reach).

For the GPU profile it also prints the estimate with training as slow as the seed's pessimistic figure says
("Llama 3.1 8B on an A100: 3,200 examples x 3 epochs in 4 hours"), loading and generation as the model has them.
Token counts come from the task's training examples through the embedded model's tokenizer (Llama 3's larger
vocabulary gives fewer tokens for the same text: an overestimate).
"""

from __future__ import annotations

import argparse

from harness import estimates, model_loading
from harness.config import load_task, resolve_trial_config
from harness.memory import read_model_shape
from harness.plan import GPUS, SEED_REFIT, lineup_shape, search_estimate, seed_slowdown
from harness.prompts import compact_json, prompt_turns
from harness.task_data import load_split

LLAMA_31_8B = lineup_shape("meta-llama/Llama-3.1-8B-Instruct")


def estimate(task, profile: str, machine: estimates.Machine, shape, tokens, trials: int):
    return search_estimate(task, profile=profile, machine=machine, shape=shape, tokens=tokens, trials=trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()

    task = load_task(args.task)
    embedded = model_loading.resolve_model(resolve_trial_config(task, profile="cpu").model)
    tokenizer = model_loading.load_tokenizer(embedded)
    sample = load_split(task, "train")[:64]
    tokens = estimates.mean_token_counts(
        tokenizer, [prompt_turns(task, e.text) for e in sample], [compact_json(e.fields) for e in sample]
    )
    print(f"token counts (embedded tokenizer, 64 training examples): prompt {tokens.prompt:.0f}, answer"
          f" {tokens.answer:.0f}")  # fmt: skip
    here = estimates.measure_machine()
    cpu_shape = read_model_shape(embedded.path)
    machines = [
        ("cpu", here, cpu_shape),
        ("cpu", estimates.Machine("cpu", "2 AVX2-only cores, fp32", 68e9), cpu_shape),
        *(
            ("gpu", estimates.Machine("cuda", f"{GPUS[card].name}, bf16", GPUS[card].matmul_tflops * 1e12), LLAMA_31_8B)
            for card in ("a100-80gb", "h100-80gb")
        ),
    ]
    for profile, machine, shape in machines:
        result = estimate(task, profile, machine, shape, tokens, args.trials)
        print(f"{profile} on {machine.description} ({machine.matmul_flops / 1e9:,.0f} GFLOP/s): {result.describe()}")

    # The seed's figure as the unit: training (trials and refit) as slow as "3,200 x 3 epochs in 4 hours" on an
    # A100 says (harness plan's second estimate); loading, generation and logging as the model has them.
    slower = seed_slowdown(tokens)
    slow_a100 = GPUS["a100-80gb"].machine(train_slowdown=slower)
    result = estimate(task, "gpu", slow_a100, LLAMA_31_8B, tokens, args.trials)
    print(f"gpu on an A100 training as slowly as the seed's {SEED_REFIT[3]:.0f} h refit says ({slower:.1f}x slower"
          f" than the FLOP model): {result.describe()}")  # fmt: skip


if __name__ == "__main__":
    main()
