"""The fused launcher (``hydra/launcher=fused``): a sweep's compatible jobs trained side by side,
each still its own MLflow run, with the metric history of its sequential run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import ROOT, TINY_OVERRIDES, compose_cfg, run_train, sqlite_uri
from lossbench.errors import NonFiniteLoss
from lossbench.fused import grouping
from lossbench.fused.stacked import StackedNet
from lossbench.models import make_model
from lossbench.training import run

# a loss whose value overflows float32 at once: the group's non-finite member
SCE_INF = """defaults:
  - /schema/loss@_here_: sce
  - _self_

name: sce
alpha: 1.0e+39
beta: 1.0
"""
GRID = ["head=softmax,sigmoid", "loss=ce,bce_logits,focal,sce_inf", "seed=1,2"]
PAIRS = [("softmax", "ce"), ("softmax", "focal"), ("softmax", "sce_inf"),
         ("sigmoid", "bce_logits"), ("sigmoid", "focal")]  # fmt: skip
# where and how a run was started, not what it computed: not compared
WHERE = ("host", "pid", "pid_start", "output_dir", "sweep_id", "fused_group", "mlflow.source.name",
         "mlflow.source.type", "mlflow.source.git.commit", "mlflow.source.git.branch")  # fmt: skip
IGNORED_PARAMS = ("output_dir", "output_roots", "logger/tracking_uri", "trainer/default_root_dir")


def searchpath(tmp: Path) -> str:
    conf = tmp / "conf" / "loss"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "sce_inf.yaml").write_text(SCE_INF)
    return f"hydra.searchpath=[file://{tmp / 'conf'}]"


@pytest.fixture(scope="module")
def fused_and_sequential(tmp_path_factory, tiny_data):
    """The grid (CNN: BatchNorm and dropout) fused in one sweep, and each valid job again as a
    sequential run in-process; returns (client, fused runs by name, seq client, seq runs)."""
    tmp = tmp_path_factory.mktemp("fused")
    data_dir = tiny_data[0]
    extra = [*TINY_OVERRIDES, "model=cnn", searchpath(tmp)]
    proc = run_train(tmp, data_dir, *extra, "hydra/launcher=fused", *GRID, multirun=True)
    fused = MlflowClient(sqlite_uri(tmp / "mlflow.db"))
    runs = fused.search_runs([fused.get_experiment_by_name("lossbench").experiment_id])
    seq_uri = sqlite_uri(tmp / "sequential.db")
    seq_ids = {}
    for head, loss in PAIRS:
        for seed in (1, 2):
            overrides = [*extra, f"data_dir={data_dir}", f"logger.tracking_uri={seq_uri}",
                         f"head={head}", f"loss={loss}", f"seed={seed}"]  # fmt: skip
            cfg = compose_cfg(overrides, tmp / "sequential" / f"{head}-{loss}-{seed}")
            try:
                seq_ids[(head, loss, seed)] = run.train(cfg)
            except NonFiniteLoss:
                seq_ids[(head, loss, seed)] = None
    seq = MlflowClient(seq_uri)
    seq_runs = seq.search_runs([seq.get_experiment_by_name("lossbench").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    return proc, fused, by_name, seq, {r.info.run_name: r for r in seq_runs}


def test_each_member_is_its_own_run_with_the_sequential_history(fused_and_sequential) -> None:
    proc, fused, runs, seq, seq_runs = fused_and_sequential
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # one member FAILED
    assert "group 1 (fused, 10 runs)" in proc.stderr + proc.stdout
    # 8 head/loss cells composed by Hydra (for the sweeper's check), the second seeds copied
    assert "8 configs composed, 8 more differing only in values" in proc.stderr + proc.stdout
    assert sorted(runs) == sorted(seq_runs) and len(runs) == 10
    groups = {r.data.tags["fused_group"] for r in runs.values()}
    assert len(groups) == 1 and {r.data.tags["fused_group_size"] for r in runs.values()} == {"10"}
    for name, mine in runs.items():
        assert_same_run(fused, mine, seq, seq_runs[name])


def assert_same_run(fused: MlflowClient, mine, seq: MlflowClient, theirs) -> None:
    """A fused member's run against its sequential run: status, tags (but where it ran),
    params, artifacts, metric names, and every metric's history to 1e-4."""
    name = mine.info.run_name
    assert mine.info.status == theirs.info.status, name
    for tag, value in theirs.data.tags.items():
        if tag not in WHERE:
            assert mine.data.tags.get(tag) == value, (name, tag)
    params = {k for k in theirs.data.params if k not in IGNORED_PARAMS}
    mine_params = {k: mine.data.params[k] for k in params}
    assert mine_params == {k: theirs.data.params[k] for k in params}
    arts = [{a.path for a in c.list_artifacts(r.info.run_id)}
            for c, r in ((fused, mine), (seq, theirs))]  # fmt: skip
    assert arts[0] == arts[1], name
    keys = {k for k in theirs.data.metrics if not k.startswith("time/")}
    assert keys == {k for k in mine.data.metrics if not k.startswith("time/")}, name
    for key in keys:
        a = sorted((m.step, m.value) for m in seq.get_metric_history(theirs.info.run_id, key))
        b = sorted((m.step, m.value) for m in fused.get_metric_history(mine.info.run_id, key))
        if key == "epoch":  # MLflow keeps one of equal (step, value) rows logged together
            assert set(a) == set(b), name
            continue
        assert [s for s, _ in a] == [s for s, _ in b], (name, key)
        for (_, x), (_, y) in zip(a, b, strict=True):
            assert y == pytest.approx(x, abs=1e-4), (name, key, a, b)


DIGITS_CE = ["dataset=digits", "head=softmax", "loss=ce"]


@pytest.mark.parametrize(
    ("fixed", "vary"),
    [
        # label noise changes targets, not inputs: each member its own noisy train/val labels
        ([*DIGITS_CE, "dataset.noise.rate=0.3"], "dataset.noise.rate=0,0.4"),
        (
            [
                "dataset=multilabel",
                "dataset.n_samples=400",
                "dataset.test_size=80",
                "head=sigmoid",
                "loss=bce_logits",
                "dataset.noise.rate=0.3",
            ],
            "dataset.noise.kind=symmetric,missing",
        ),
        # a constant lr of each member's own: Adam; SGD with momentum and weight decay
        (DIGITS_CE, "optimizer.lr=0.001,0.004"),
        ([*DIGITS_CE, "optimizer=sgd", "optimizer.weight_decay=0.001"], "optimizer.lr=0.01,0.05"),
        # early stopping: each member stops at its own epoch, tested where it stopped
        (
            [
                *DIGITS_CE,
                "trainer.max_epochs=6",
                "early_stopping.patience=1",
                "early_stopping.min_delta=0.05",
                "test_on=last",
            ],
            "optimizer.lr=0.001,0.05",
        ),
        # lossbench.studies.tune's comparison: one lr text, resolved per member (AdamW, decay)
        (
            [
                "dataset=digits",
                "head=softmax",
                "optimizer=adamw",
                "tuned_lr={ce:0.001,focal:0.004}",
                "optimizer.lr='${tuned_lr.${loss.name}}'",
            ],
            "loss=ce,focal",
        ),
    ],  # fmt: skip
)
def test_members_that_differ_in_targets_or_lr_are_one_group(
    fixed: list[str], vary: str, tmp_path: Path, tiny_data
) -> None:
    """Two values of ``vary`` x 2 seeds train as one group, each member with the history of its
    sequential run."""
    extra = [*TINY_OVERRIDES, "model=mlp", *fixed]
    proc = run_train(tmp_path, tiny_data[0], *extra, "hydra/launcher=fused", vary, "seed=1,2",
                     multirun=True)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "in 1 groups" in out and "group 1 (fused, 4 runs)" in out
    fused = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    runs = fused.search_runs([fused.get_experiment_by_name("lossbench").experiment_id])
    assert len(runs) == 4 and len({r.data.tags["fused_group"] for r in runs}) == 1
    seq_uri = sqlite_uri(tmp_path / "sequential.db")
    key, values = vary.split("=")
    for value in values.split(","):
        for seed in (1, 2):
            overrides = [*extra, f"data_dir={tiny_data[0]}", f"logger.tracking_uri={seq_uri}",
                         f"{key}={value}", f"seed={seed}"]  # fmt: skip
            run.train(compose_cfg(overrides, tmp_path / "sequential" / f"{value}-{seed}"))
    seq = MlflowClient(seq_uri)
    seq_runs = seq.search_runs([seq.get_experiment_by_name("lossbench").experiment_id])

    def config(r) -> tuple[str, str, str]:  # what the run recorded of the varied key
        value = r.data.tags[key] if key == "loss" else r.data.params[key.replace(".", "/")]
        return value, r.data.tags["seed"], r.data.params["optimizer/lr"]

    by_config = {config(r): r for r in seq_runs}
    assert len(by_config) == 4
    for mine in runs:
        assert_same_run(fused, mine, seq, by_config[config(mine)])
    if "early_stopping.patience=1" in fixed:  # stopped, and not all at one epoch
        epochs = [len(seq.get_metric_history(r.info.run_id, "val/loss")) for r in seq_runs]
        assert min(epochs) < 6 and len(set(epochs)) > 1, epochs


def test_a_member_whose_config_does_not_resolve_fails_with_why(tmp_path: Path, tiny_data) -> None:
    """focal has no entry in the lr table: its jobs fail with the reason a sequential sweep
    gives (they used to end without an outcome), and the ce jobs of their group train."""
    extra = [*TINY_OVERRIDES, "model=mlp", "dataset=digits", "tuned_lr={ce:0.002}",
             "optimizer.lr='${tuned_lr.${loss.name}}'"]  # fmt: skip
    proc = run_train(tmp_path, tiny_data[0], *extra, "hydra/launcher=fused", "loss=ce,focal",
                     "seed=1,2", multirun=True)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]  # jobs failed
    assert "jobs: 2 finished, 2 failed, 0 skipped" in out
    outcomes = [json.loads(p.read_text()) for p in (tmp_path / "multirun").glob("*/outcome.json")]
    assert len(outcomes) == 4
    for o in outcomes:
        if "loss=focal" in o["overrides"]:
            assert o["status"] == "FAILED"
            assert o["reason"].startswith("the run could not be set up: InterpolationKeyError")
            assert "tuned_lr.focal" in o["reason"]
        else:
            assert o["status"] == "FINISHED"
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert sorted((r.data.tags["loss"], r.info.status) for r in runs) == [("ce", "FINISHED")] * 2


def test_a_non_finite_member_fails_at_its_step_and_the_others_finish(fused_and_sequential):
    _, _, runs, _, seq_runs = fused_and_sequential
    bad = [n for n in runs if "sce" in n]
    assert len(bad) == 2
    for name in bad:
        assert runs[name].info.status == "FAILED"
        assert runs[name].data.tags["failed_at_step"] == seq_runs[name].data.tags["failed_at_step"]
        assert "NaN or infinite" in runs[name].data.tags["failure"]
    finished = [r for n, r in runs.items() if n not in bad]
    assert len(finished) == 8 and all(r.info.status == "FINISHED" for r in finished)


def test_a_mixed_sweep_forms_two_groups_and_a_singleton(tmp_path: Path) -> None:
    jobs = [["model=mlp", "seed=1"], ["model=mlp", "seed=2", "head=sigmoid", "loss=bce_logits"],
            ["model=cnn", "seed=1"], ["model=cnn", "seed=2"],
            ["model=mlp", "augment=flip_crop"], ["model=mlp", "optimizer.weight_decay=0.01"],
            ["model=mlp", "seed=3", "dataset.noise.rate=0.4"],  # other targets, same inputs
            ["model=mlp", "dataset.imbalance.factor=10"]]  # other samples  # fmt: skip
    configs = [compose_cfg(o, tmp_path) for o in jobs]
    groups = grouping.plan(configs, max_group=64)
    assert [g.jobs for g in groups] == [[0, 1, 6], [2, 3], [4], [5], [7]]
    assert groups[0].alone is None and groups[1].alone is None
    assert "augment=flip_crop" in groups[2].alone
    assert groups[3].alone == groups[4].alone == "the only job of its kind"
    assert [g.jobs for g in grouping.plan(configs, max_group=1)] == [[i] for i in range(8)]
    # 3 of a kind, at most 2 a group: 1 + 2; 5 of a kind, at most 4: 2 + 3 (not 4 + 1)
    split = grouping.plan(configs, max_group=2)
    assert [g.jobs for g in split][:3] == [[0], [1, 6], [2, 3]]
    assert split[0].alone == "hydra.launcher.max_group=2 splits its kind"
    five = [compose_cfg(["model=mlp", f"seed={s}"], tmp_path) for s in range(5)]
    assert [g.jobs for g in grouping.plan(five, max_group=4)] == [[0, 1], [2, 3, 4]]
    lines = grouping.describe(groups, [f"job{i}" for i in range(8)])
    assert lines[0] == "group 1 (fused, 3 runs): job0, job1, job6"


def test_a_learning_rate_is_per_member_unless_scheduled(tmp_path: Path) -> None:
    """A constant lr may differ within a group; a scheduled one may not: its key is the lr the
    job resolves (lossbench.studies.tune's one text, ${tuned_lr...}, that resolves per pair)."""
    tuned = ["tuned_lr={ce:0.001,focal:0.004,nll:0.001}", "optimizer.lr='${tuned_lr.${loss.name}}'"]
    jobs = [
        ["optimizer.lr=0.001"],
        ["optimizer.lr=0.01"],  # constant: one group
        ["scheduler=step", "optimizer.lr=0.001"],
        ["scheduler=step", "optimizer.lr=0.01"],
        *(["scheduler=step", *tuned, f"loss={loss}"] for loss in ("ce", "focal", "nll")),
    ]
    configs = [compose_cfg(["model=mlp", f"seed={i}", *o], tmp_path) for i, o in enumerate(jobs)]
    groups = [g.jobs for g in grouping.plan(configs, max_group=64)]
    assert groups == [[0, 1], [2], [3], [4, 6], [5]]  # focal (5) resolves another lr
    # lossbench.studies.tune's comparison: the Optuna study's name differs by pair, the training not
    compare = ["+experiment=tune_lr", "tune.seeds=null", tuned[1],
               "tuned_lr={softmax:{ce:0.001,focal:0.004}}"]  # fmt: skip
    configs = [compose_cfg([*compare, "head=softmax", f"loss={loss}"], tmp_path)
               for loss in ("ce", "focal")]  # fmt: skip
    assert configs[0].tune.study_name != configs[1].tune.study_name
    assert [g.jobs for g in grouping.plan(configs, max_group=64)] == [[0, 1]]
    # a pair the comparison did not tune is skipped at once, not counted in a fused group
    untuned = compose_cfg([*compare[:3], "tuned_lr={softmax:{ce:0.001,focal:null}}",
                           "head=softmax", "loss=focal"], tmp_path)  # fmt: skip
    (group,) = grouping.plan([untuned], max_group=64)
    assert group.alone == "skipped, head=softmax loss=focal was not tuned"


def test_each_job_config_is_hydras_own_composition(tmp_path: Path) -> None:
    """The launcher composes once per set of config-group choices and puts each job's values
    into a copy: every job's config (the hydra node included) must equal Hydra's."""
    import itertools

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    from lossbench import schemas
    from lossbench.config import CONF
    from lossbench.fused.compose import CachingConfigLoader, SweepComposer

    cells = [["head=softmax", "loss=ce"], ["head=softmax", "loss=sce_inf"],
             ["head=sigmoid", "loss=focal", "loss.gamma=3"], ["model=cnn", "head=sigmoid",
             "loss=bce_logits"], ["loss=ce", "+experiment=multiclass_grid"],
             ["loss=ce", "++loss.label_smoothing=0.1"]]  # fmt: skip
    values = [["seed=1", "optimizer.lr=0.01"], ["seed=2", "optimizer.lr=1e-3"],
              ["seed=3", "optimizer.lr=0.01", "logger.experiment_name='a b'"],
              ["seed=2", "trainer.limit_val_batches=null", "optimizer.lr=0.01"]]  # fmt: skip
    jobs = [cell + value for cell, value in itertools.product(cells, values)]
    schemas.register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "config", [searchpath(tmp_path), "hydra/launcher=fused", "trainer.max_epochs=1"],
            RunMode.MULTIRUN,
        )  # fmt: skip
        composer = SweepComposer(loader, master)
        for job in jobs:
            ours, hydras = composer.compose(job), loader.load_sweep_config(master, job)
            assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), job
            for a, b in ((ours, hydras), (ours.hydra, hydras.hydra)):
                assert OmegaConf.is_struct(a) == OmegaConf.is_struct(b)
                assert OmegaConf.is_readonly(a) == OmegaConf.is_readonly(b)
        # a value override that cannot be applied: Hydra's own error, not a copy
        for job in (["head=softmax", "loss=ce", "seed=abc", "optimizer.lr=0.01"], ["seed=1,2"]):
            with pytest.raises(ConfigCompositionException) as ours:
                composer.compose(job)
            with pytest.raises(ConfigCompositionException) as hydras:
                loader.load_sweep_config(master, job)
            assert str(ours.value) == str(hydras.value)
        # the sweeper's check composes each job and discards it: the launcher takes it over
        caching = CachingConfigLoader(loader)
        for job in jobs[:8]:
            checked = caching.load_sweep_config(master, job)
            taken = caching.take(master, job)
            assert taken is checked  # handed over, not composed or copied again
            with open_dict(taken):
                taken.hydra.job.num = 7  # as the launcher does
            again = caching.take(master, job)  # handed over once: a job launched twice
            assert again is not taken and OmegaConf.to_yaml(again) == OmegaConf.to_yaml(
                loader.load_sweep_config(master, job))  # fmt: skip
        assert caching.composer(master).composed == 6 and not caching.done  # each handed over
        caching.load_sweep_config(master, jobs[0])
        caching.forget()
        assert not caching.done
    # in each cell the first two value sets (the same keys) share one composition
    assert (composer.composed, composer.reused) == (len(cells) * 3, len(cells))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_stacked_members_are_their_own_networks(name: str) -> None:
    """Forward (train and eval, per-member and shared input), BatchNorm's running statistics
    and each member's state, against the members' own modules."""
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(make_model(name, (1, 12, 12), 4, dropout=0.0))
    net = StackedNet([make_model(name, (1, 12, 12), 4, dropout=0.0) for _ in range(3)])
    for i, m in enumerate(models):
        net.load_member(i, m.state_dict())
    x = torch.randn(3, 8, 1, 12, 12)
    for training in (True, False):
        net.train(training)
        for m in models:
            m.train(training)
        want = torch.stack([m(x[i]) for i, m in enumerate(models)])
        assert torch.allclose(net(x), want, atol=1e-6)
        assert torch.allclose(net(x[0], shared=True), torch.stack([m(x[0]) for m in models]),
                              atol=1e-6)  # fmt: skip
    for i, m in enumerate(models):
        state = net.member_state(i)
        assert state.keys() == m.state_dict().keys()
        for k, v in m.state_dict().items():
            assert torch.allclose(state[k].float(), v.float(), atol=1e-6), k


def test_sigterm_ends_every_member_killed(tmp_path: Path, tiny_data) -> None:
    args = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=fused",
            f"hydra.sweep.dir={tmp_path / 'multirun'}", f"data_dir={tiny_data[0]}",
            f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}",
            f"output_roots=[{tmp_path}]", *TINY_OVERRIDES, "trainer.max_epochs=200",
            "seed=1,2,3"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path)  # fmt: skip
    log = []
    for line in proc.stdout:
        log.append(line)
        if "epoch 2/200" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, "".join(log) + rest
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert len(runs) == 3
    for r in runs:
        assert r.info.status == "KILLED"
        assert r.data.tags["failure"].startswith("stopped by SIGTERM")
    assert "are KILLED" in rest
