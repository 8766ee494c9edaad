"""Run with the code of commit 9c3119c (before the issue-10 layout): writes a small SQDF study
and a SEIKO study plus what they held, for tests/test_layout_compat.py."""

import json
import sys
from pathlib import Path

import torch
from sqdf_bbo.baselines import SEIKO, SEIKOConfig
from sqdf_bbo.sqdf_optimizer import SQDF, SQDFOptimizerConfig

from tests.conftest import mlp_prior  # run from the old checkout's root (PYTHONPATH=.)

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
prior = mlp_prior()
expected = {}
for name, make in (
    (
        "sqdf",
        lambda d: SQDF(
            prior,
            batch_size=4,
            seed=3,
            study=d,
            config=SQDFOptimizerConfig(
                steps_per_round=2,
                finetune_batch_size=8,
                rollouts_per_step=2,
                buffer_capacity=64,
                gamma=0.8,
                progress=False,
                surrogate_options={"n_heads": 2, "hidden": 8, "steps": 20},
            ),
        ),
    ),
    (
        "seiko",
        lambda d: SEIKO(
            prior,
            batch_size=4,
            seed=4,
            study=d,
            config=SEIKOConfig(
                steps_per_round=2,
                finetune_batch_size=4,
                progress=False,
                surrogate_options={"hidden": 8, "steps": 20},
            ),
        ),
    ),
):
    d = out / f"study_{name}"
    opt = make(d)
    for r in range(2):
        b = opt.ask()
        y = (-(b.x**2).sum(1)).tolist()
        opt.tell(b.ids[:3], y[:3])
        if r == 0:
            opt.mark_failed([b.ids[3]], "lab: sample lost")
    opt.tell_external(torch.tensor([[0.5, -0.5]]), [0.25])
    b = opt.ask()  # round 2 fitted; these 4 stay pending
    nxt = opt.ask(2)  # a second ask, also pending
    h = opt.history
    expected[name] = {
        "counts": opt.counts(),
        "round": opt.round,
        "pending": list(opt.pending),
        "values": [None if v != v else v for v in h["value"].tolist()],
        "states": h["state"].tolist(),
        "x_last": nxt.x.tolist(),
        "config": opt.config.to_dict(),
    }
    opt.close()
    # 3. What the old code does next: a detached copy tells every pending point and asks 3.
    again = type(opt).load(d, attach=False)
    pend = again.designs(list(again.pending))
    again.tell(list(again.pending), (-(pend**2).sum(1)).tolist())
    expected[name]["x_next"] = again.ask(3).x.tolist()
    expected[name]["round_next"] = again.round
(out / "expected.json").write_text(json.dumps(expected, indent=1))
print("ok", {k: v["counts"] for k, v in expected.items()})
