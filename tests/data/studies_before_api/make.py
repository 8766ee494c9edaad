"""Run with the code of commit 3162153 (before issue 17: ``alpha``/``alpha_official``, the
``finetune`` field, flat-name maps on the configs): writes a small SQDF study and a SEIKO study
of that format plus what they held and what that code did next, for
tests/test_api_compat.py. From a checkout of that commit: ``PYTHONPATH=. python make.py OUT``.
"""

import json
import sys
from pathlib import Path

import torch

from sqdf_bbo.optimizers import SEIKO, SQDF, SEIKOConfig, SQDFOptimizerConfig
from tests.conftest import mlp_prior  # run from the old checkout's root (PYTHONPATH=.)

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
prior = mlp_prior()
configs = {
    "sqdf": SQDFOptimizerConfig(
        progress=False,
        surrogate_options={"n_heads": 2, "hidden": 8, "steps": 20},
        finetune={
            "steps": 2,
            "transitions_per_step": 8,
            "rollouts_per_step": 2,
            "buffer_capacity": 64,
            "gamma": 0.8,
            "alpha_official": 3.0,
        },
    ),
    "seiko": SEIKOConfig(  # α given in our convention: converted to kl_weight with D = 2
        progress=False,
        surrogate_options={"hidden": 8, "steps": 20},
        finetune={"steps": 2, "chains_per_step": 4, "alpha": 0.5},
    ),
}
expected = {}
for name, cls, seed in (("sqdf", SQDF, 3), ("seiko", SEIKO, 4)):
    d = out / f"study_{name}"
    opt = cls(prior, batch_size=4, seed=seed, study=d, config=configs[name])
    for r in range(2):
        b = opt.ask()
        y = (-(b.x**2).sum(1)).tolist()
        opt.tell(b.ids[:3], y[:3])
        if r == 0:
            opt.mark_failed([b.ids[3]], "lab: sample lost")
    opt.tell_external(torch.tensor([[0.5, -0.5]]), [0.25])
    opt.ask()  # round 2 fitted; these 4 stay pending
    opt.ask(2)  # a second ask, also pending
    h = opt.history
    expected[name] = {
        "counts": opt.counts(),
        "round": opt.round,
        "pending": list(opt.pending),
        "values": [None if v != v else v for v in h["value"].tolist()],
        "states": h["state"].tolist(),
        "config": opt.config.to_dict(),
        "alpha": float(opt.trainer.config.alpha),
    }
    opt.close()
    # What this code does next: a detached copy tells every pending point, asks 3, twice.
    again = type(opt).load(d, attach=False)
    nexts = []
    for _ in range(2):
        pend = again.designs(list(again.pending))
        again.tell(list(again.pending), (-(pend**2).sum(1)).tolist())
        nexts.append(again.ask(3).x.tolist())
    expected[name]["x_next"] = nexts
    expected[name]["round_next"] = again.round
(out / "expected.json").write_text(json.dumps(expected, indent=1))
print("ok", {k: v["counts"] for k, v in expected.items()})
