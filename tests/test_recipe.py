"""models.recipe: the shipped training recipe as one resumable command."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import recipe
from models.recipe import (CROSS_VALIDATION, SHIPPED, V13, V13_CROSS_VALIDATION, V14, Job, Step,
                           plan, runnable)

ROOT = Path(__file__).resolve().parents[1]


def _step_args(command: str) -> tuple[str | None, list[str]]:
    """A lineage command -> (the model it starts from, its other arguments)."""
    words = command.split()[3:]  # after "python -m models.train"
    init, rest, i = None, [], 0
    while i < len(words):
        if words[i] in ("--init-onnx", "--out"):
            if words[i] == "--init-onnx":
                init = words[i + 1].strip("<>").removesuffix(".onnx")
            i += 2
        else:
            rest.append(words[i])
            i += 1
    return init, rest


def _options(words: list[str]) -> dict[str, list[tuple[str, ...]]]:
    """Arguments -> {option: the values it was given each time, in order} (the meaning of a
    command line whatever the order of its options; a repeated option's last value wins)."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for w in words:
        if w.startswith("--"):
            opt = w
            out.setdefault(opt, []).append(())
        else:
            out[opt][-1] += (w,)
    return out


def test_the_recipe_is_the_lineage_of_the_shipped_model():
    shipped = json.loads((ROOT / "models" / "pecs_seg.json").read_text())["lineage"]
    steps = [v["command"] for k, v in shipped.items() if k[0].isdigit()]
    assert len(steps) == len(SHIPPED) == 3 and SHIPPED == recipe.V16I8
    for step, command in zip(SHIPPED, steps):
        if step.tool == "quantize":
            assert command == (f"python -m models.quantize --onnx <{step.init}.onnx> "
                               f"--out <{step.name}.onnx>")
            continue
        init, args = _step_args(command)
        assert init == step.init, step.name
        assert _options(args) == _options([*step.args, *recipe.COMMON, "--resume"]), step.name
    assert [j.argv[2] for j in plan(ROOT, SHIPPED)] == ["models.train"] * 2 + ["models.quantize"]


def test_v13_is_the_lineage_of_the_model_the_shipped_one_replaced():
    v13 = json.loads((ROOT / "models" / "pecs_seg.json").read_text())["lineage"]["replaces"]
    steps = [v["command"] for k, v in v13["lineage"].items() if k[0].isdigit()]
    assert len(steps) == len(V13) == 7
    for step, command in zip(V13, steps):
        init, args = _step_args(command)
        assert init == step.init, step.name
        assert args == [*step.args, *recipe.COMMON], step.name


def test_the_v14_candidate_starts_from_the_imagenet_encoder_and_its_cv_is_the_same():
    base, tune = V14
    assert base.init is None and tune.init == base.name
    assert all("--arch efflite0" in " ".join(s.args) for s in V14)
    assert "--needle-weight 1" in " ".join(tune.args)
    assert recipe.RECIPES["v14"] == (V14, V14)
    assert CROSS_VALIDATION == recipe.V16I8


def test_a_lineage_plan_chains_each_step_to_the_one_before(tmp_path):
    jobs = plan(tmp_path, V13, extra=("--patch", "160"), python="py")
    assert [j.key for j in jobs] == [s.name for s in V13]
    for before, job in zip(jobs, jobs[1:]):
        assert job.after == before.key
        i = job.argv.index("--init-onnx")
        assert job.argv[i + 1] == str(before.outputs[0])
    first = jobs[0].argv
    assert first[:3] == ["py", "-m", "models.train"] and "--init-onnx" not in first
    # --resume so a killed step goes on; extra arguments after the step's own (they win)
    assert all(j.argv[-1] == "--resume" and j.argv[-3:-1] == ["--patch", "160"] for j in jobs)


def test_the_cross_validation_plan_runs_the_folds_of_a_step_side_by_side(tmp_path):
    jobs = plan(tmp_path, V13_CROSS_VALIDATION, cv=3)
    assert len(jobs) == 18
    assert [j.key for j in jobs[:4]] == ["v8base/fold0", "v8base/fold1", "v8base/fold2",
                                         "v9base/fold0"]
    last = {j.key: j for j in jobs}["v12/fold2"]
    # the cross-validation's 1x1 step starts from step 4, without the local-anaesthetic frames
    assert last.after == "v11base/fold2" and "--sim-la" not in last.argv
    assert last.argv[last.argv.index("--cv-init") + 1] == str(tmp_path / "v11base")
    assert last.outputs == (tmp_path / "v12" / "fold2.onnx", tmp_path / "v12" / "cv_f2.json")
    assert plan(tmp_path, V13_CROSS_VALIDATION, cv=3, folds=[2])[0].key == "v8base/fold2"
    with pytest.raises(ValueError, match="folds 0-2"):
        plan(tmp_path, V13_CROSS_VALIDATION, cv=3, folds=[3])
    with pytest.raises(ValueError, match="'later'.*not an earlier step"):
        plan(tmp_path, (Step("a", "later", ()), Step("later", None, ())))


def test_runnable_waits_for_the_step_before_and_fills_free_slots(tmp_path):
    jobs = plan(tmp_path, V13_CROSS_VALIDATION, cv=3)
    keys = lambda js: [j.key for j in js]  # noqa: E731
    assert keys(runnable(jobs, set(), set(), 2)) == ["v8base/fold0", "v8base/fold1"]
    assert keys(runnable(jobs, {"v8base/fold0"}, {"v8base/fold1"}, 2)) == ["v8base/fold2"]
    assert keys(runnable(jobs, {"v8base/fold0", "v8base/fold1"}, {"v8base/fold2"}, 2)) == \
        ["v9base/fold0"]
    assert runnable(jobs, set(), {"v8base/fold0", "v8base/fold1"}, 2) == []


def _fake(tmp_path: Path, key: str, after: str | None, fail: bool = False) -> Job:
    """A real process standing in for a training step: it checks that the step before has
    finished, then writes its model and manifest."""
    out = tmp_path / f"{key}.onnx"
    code = (f"import pathlib,sys\n"
            f"b = {after!r}\n"
            f"if b and not pathlib.Path({str(tmp_path)!r}, b + '.json').exists(): sys.exit(3)\n"
            f"if {fail!r}: sys.exit(5)\n"
            f"pathlib.Path({str(out)!r}).write_bytes(b'{key}')\n"
            f"pathlib.Path({str(out.with_suffix('.json'))!r}).write_text("
            f"'{{\"sha256\": \"x\", \"training\": {{\"command\": \"c {key}\", \"iters\": 1}}}}')\n")
    return Job(key, [sys.executable, "-c", code], (out, out.with_suffix(".json")), after,
               tmp_path / f"{key}.log")


def test_run_jobs_runs_steps_in_order_skips_finished_ones_and_names_a_failure(tmp_path):
    jobs = [_fake(tmp_path, "a0", None), _fake(tmp_path, "a1", None),
            _fake(tmp_path, "b0", "a0"), _fake(tmp_path, "b1", "a1")]
    said: list[str] = []
    assert recipe.run_jobs(jobs, 2, tmp_path, poll_s=0.02, say=said.append) == 0
    assert all(recipe.is_done(j) for j in jobs)
    starts = [s.split()[2].rstrip(":") for s in said if " start " in s]
    assert sorted(starts) == ["a0", "a1", "b0", "b1"]
    assert starts.index("b0") > starts.index("a0")

    said.clear()  # run again: everything is there, nothing starts
    assert recipe.run_jobs(jobs, 2, tmp_path, poll_s=0.02, say=said.append) == 0
    assert not [s for s in said if " start " in s]

    bad = [_fake(tmp_path, "c0", None, fail=True), _fake(tmp_path, "d0", "c0")]
    said.clear()
    assert recipe.run_jobs(bad, 2, tmp_path, poll_s=0.02, say=said.append) == 5
    assert any("step c0 failed (exit 5)" in s and "c0.log" in s for s in said)
    assert not (tmp_path / "d0.onnx").exists()


def test_a_lineage_writes_its_steps_into_the_last_manifest(tmp_path):
    jobs = [_fake(tmp_path, "a", None), _fake(tmp_path, "b", "a")]
    assert recipe.train_lineage(jobs, tmp_path, say=lambda s: None, poll_s=0.02) == 0
    lin = json.loads((tmp_path / "b.json").read_text())["lineage"]
    assert list(lin) == ["1_a", "2_b"] and lin["2_b"]["command"] == "c b"


def _training_python() -> str:
    """A Python that can train and export (torch and onnx: the train extra, which the test
    environment lacks because onnx needs a newer protobuf than mediapipe)."""
    for py in (sys.executable, str(ROOT / ".venv-train" / "bin" / "python")):
        if Path(py).exists() and subprocess.run([py, "-c", "import torch, onnx"],
                                                capture_output=True).returncode == 0:
            return py
    pytest.skip("no Python with torch and onnx (bash scripts/setup.sh train makes .venv-train)")


def test_a_real_two_step_lineage_trains_and_records_itself(tmp_path, shared_data):
    tiny = ("--iters", "2", "--minutes", "5", "--batch", "2", "--size", "64", "--base", "4",
            "--sim", "4", "--sim-test", "2", "--patch", "0", "--data", str(shared_data),
            "--cache", str(tmp_path / "cache"))
    steps = (Step("first", None, ()), Step("second", "first", ("--lr", "1e-3")))
    jobs = plan(tmp_path / "out", steps, extra=tiny, python=_training_python())
    said: list[str] = []
    assert recipe.train_lineage(jobs, ROOT, say=said.append, poll_s=0.2) == 0, \
        [said, *(j.log.read_text()[-2000:] for j in jobs if j.log.exists())]
    m = json.loads((tmp_path / "out" / "second.json").read_text())
    assert m["training"]["init_sha256"] == hashlib.sha256(
        (tmp_path / "out" / "first.onnx").read_bytes()).hexdigest()
    lin = m["lineage"]
    assert [v["iters"] for v in lin.values()] == [2, 2]
    assert lin["2_second"]["sha256"] == m["sha256"]


def test_the_command_line_dry_run_and_its_errors(tmp_path, capsys):
    assert recipe.main(["--cv", "3", "--out", str(tmp_path), "--patch", "160", "--dry-run",
                        "--recipe", "v13"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 18 and all(s.startswith("todo ") and "--patch 160" in s for s in lines)
    assert recipe.main(["--out", str(tmp_path), "--dry-run"]) == 0  # the shipped model's
    lines = capsys.readouterr().out.splitlines()
    assert [s.split()[2] for s in lines] == ["models.train", "models.train", "models.quantize"]
    assert recipe.main(["--cv", "3", "--out", str(tmp_path), "--dry-run", "--recipe", "v14"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all("--arch efflite0" in s for s in lines)
    assert ["--cv-init" in s for s in lines] == [False] * 3 + [True] * 3
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    for argv, msg in ((["--folds", "1"], "--folds needs --cv"),
                      (["--cv", "3", "--folds", "4"], "folds 0-2"),
                      (["--jobs", "0"], "--jobs must be >= 1")):
        with pytest.raises(SystemExit):
            recipe.main(["--out", str(tmp_path), *argv])
        assert msg in capsys.readouterr().err


def test_v15_is_v14_with_needles_near_the_artery_and_prints_its_steps(capsys):
    base, tune = recipe.V15
    assert base == V14[0] and tune.init == base.name
    assert tune.args == V14[1].args + ("--sim-artery", "100")
    assert recipe.main(["--recipe", "v15", "--step-args", "v15"]) == 0
    assert capsys.readouterr().out.split() == list(tune.args)
    with pytest.raises(SystemExit):
        recipe.main(["--recipe", "v15", "--step-args", "v99"])
    assert "has the steps v14base, v15" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.main(["--recipe", "v15"])
    assert "--out is required" in capsys.readouterr().err


def test_v16_is_v14_at_its_cpu_iterations_with_the_pocket_weight_in_both_steps(capsys):
    base, tune = recipe.V16
    assert base.init is None and tune.init == base.name
    for step, v14 in zip(recipe.V16, V14):
        assert step.args[:len(v14.args)] == v14.args  # v14's arguments, then the changes
        extra = step.args[len(v14.args):]
        assert extra[-2:] == ("--pocket-weight", "30") and "--minutes" in extra
    assert recipe.main(["--recipe", "v16", "--step-args", "v16base"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == list(base.args) and "5214" in printed


def test_a_quantize_step_quantizes_the_step_before_and_a_fold_keeps_its_held_out(tmp_path):
    *v16, q = recipe.V16I8
    assert tuple(v16) == recipe.V16 and q.tool == "quantize" and q.init == "v16" and q.args == ()
    jobs = plan(tmp_path, recipe.V16I8, python="py")
    last = jobs[-1]
    assert [j.key for j in jobs] == ["v16base", "v16", "v16i8"] and last.after == "v16"
    assert last.argv == ["py", "-m", "models.quantize", "--onnx", str(tmp_path / "v16.onnx"),
                         "--out", str(tmp_path / "v16i8.onnx")]
    jobs = plan(tmp_path, recipe.V16I8, cv=3, folds=[2], python="py")
    last = jobs[-1]
    assert last.key == "v16i8/fold2" and last.after == "v16/fold2"
    src = str(tmp_path / "v16" / "fold2.onnx")
    assert last.argv[3:] == ["--onnx", src, "--out", str(tmp_path / "v16i8" / "fold2.onnx"),
                             "--held-out-from", src]
    # the folds' quantize steps start once their own training step is done
    assert runnable(jobs, {"v16base/fold2", "v16/fold2"}, set(), 2) == [last]
    with pytest.raises(ValueError, match="quantize step needs"):
        plan(tmp_path, (Step("q", None, (), tool="quantize"),))
    with pytest.raises(ValueError, match="tool 'prune'"):
        plan(tmp_path, (Step("a", None, (), tool="prune"),))


def test_the_lineage_of_a_quantize_step_is_its_command_and_kept_float_nodes(tmp_path):
    jobs = plan(tmp_path, recipe.V16I8, python="py")
    for j, m in zip(jobs, [
            {"sha256": "a", "training": {"command": "python -m models.train x", "iters": 5}},
            {"sha256": "b", "training": {"command": "python -m models.train y", "iters": 7}},
            {"sha256": "c", "training": {"command": "python -m models.train y", "iters": 7},
             "quantization": {"command": "python -m models.quantize z", "kept_float": ["n1"],
                              "float_model_sha256": "b"}}]):
        j.outputs[1].write_text(json.dumps(m))
    lin = recipe.lineage(jobs)
    assert lin["2_v16"] == {"command": "python -m models.train y", "iters": 7, "train_s": None,
                            "sha256": "b"}
    assert lin["3_v16i8"] == {"command": "python -m models.quantize z", "kept_float": ["n1"],
                              "float_model_sha256": "b", "sha256": "c"}
