"""models.train's checkpoints: a killed run resumed gives the weights of a run never killed.

Training needs torch: never a runtime dependency, but in the dev extra (the tests' set-up and
CI), so these run there; a runtime-only environment skips them.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
train_mod = pytest.importorskip("models.train")

ITERS, SIZE, BASE = 6, 64, 4
MIX = {"usgra": 1.0, "dltrack": 1.0, "sim": 1.0}


@pytest.fixture(scope="module")
def samples():
    return train_mod.make_sim(3, seed=4242, store_hw=(96, 96))


def run(samples, ckpt):
    torch.set_num_threads(1)
    return train_mod.train(samples, ITERS, SIZE, 2, 1e-3, 0, BASE, None, MIX, ckpt=ckpt)


def test_a_killed_run_resumes_to_the_same_weights(samples, tmp_path, monkeypatch):
    whole = run(samples, train_mod.Checkpoint(tmp_path / "whole.ckpt.pt", every_s=0))
    assert torch.load(tmp_path / "whole.ckpt.pt", weights_only=True)["it"] == ITERS

    path = tmp_path / "killed.ckpt.pt"
    real_loss, calls = train_mod.loss_fn, []

    def dies_on_the_fourth(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return real_loss(*a, **k)

    monkeypatch.setattr(train_mod, "loss_fn", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        run(samples, train_mod.Checkpoint(path, every_s=0, resume=True))
    saved = torch.load(path, weights_only=True)
    assert saved["it"] == 3 and saved["done"] == 3
    monkeypatch.setattr(train_mod, "loss_fn", real_loss)

    resumed = run(samples, train_mod.Checkpoint(path, every_s=0, resume=True))
    assert resumed.iters_done == ITERS
    # its training time counts the killed process's seconds too (the manifest's train_s)
    assert resumed.train_s > saved["spent_s"] > 0
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the check is not vacuous: three iterations fewer give other weights
    fresh = train_mod.train(samples, 3, SIZE, 2, 1e-3, 0, BASE, None, MIX)
    assert not all(torch.equal(a[k], fresh.state_dict()[k]) for k in a)


def test_a_checkpoint_of_another_run_is_refused_by_name(samples, tmp_path):
    path = tmp_path / "run.ckpt.pt"
    ck = train_mod.Checkpoint(path, every_s=1e9, fingerprint={"lr": 0.001, "seed": 0})
    run(samples, ck)
    other = train_mod.Checkpoint(path, resume=True, fingerprint={"lr": 0.0005, "seed": 0})
    with pytest.raises(ValueError, match=r"another run \(lr: saved 0.001, now 0.0005\)"):
        other.load()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        train_mod.Checkpoint(path, resume=True).load()
    # without --resume an old file is not read, and is overwritten by the new run
    assert train_mod.Checkpoint(path).load() is None
    assert np.isfinite(run(samples, train_mod.Checkpoint(path)).head.weight.sum().item())
    assert torch.load(path, weights_only=True)["it"] == ITERS
