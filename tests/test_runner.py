import pytest

from benchmark.core.errors import UserError
from benchmark.core.registry import METHODS
from benchmark.core.protocol import MaskSource
from benchmark.runner import RunConfig, build_method, parse_param, run

from helpers import SYNTHETIC_TINY, Oracle


@pytest.fixture
def oracle():
    METHODS.register("test-oracle")(Oracle)
    yield "test-oracle"
    METHODS.unregister("test-oracle")


def _values(result):
    return {r["metric"]: r["value"] for r in result.rows}


def test_perfect_predictor_scores_one(oracle, tmp_path):
    config = RunConfig(method=oracle, dataset="synthetic", num_parts=8, dataset_options=SYNTHETIC_TINY,
                       metrics=("fg_nmi", "fg_ari", "nmi", "ari"))
    values = _values(run(config, out_dir=tmp_path))
    assert values == pytest.approx({"fg_nmi": 1.0, "fg_ari": 1.0, "nmi": 1.0, "ari": 1.0}, abs=1e-9)


def test_random_scores_near_zero_and_beats_nothing(tmp_path):
    config = RunConfig(method="random", dataset="synthetic", dataset_options=SYNTHETIC_TINY,
                       metrics=("fg_nmi", "fg_ari"))
    values = _values(run(config, out_dir=tmp_path))
    assert abs(values["fg_nmi"]) < 0.02 and abs(values["fg_ari"]) < 0.02


def test_rows_record_the_run_and_same_seed_gives_same_values(tmp_path):
    config = RunConfig(method="random", dataset="synthetic", seed=3, dataset_options=SYNTHETIC_TINY)
    first = run(config, out_dir=tmp_path / "a")
    second = run(config, out_dir=tmp_path / "b")
    assert _values(first) == _values(second)
    row = first.rows[0]
    assert row["protocol"] == "corrected" and row["masks"] == "gt" and row["seed"] == 3
    assert row["method"] == "random" and row["dataset"] == "synthetic" and row["git_sha"]
    assert {r["metric"] for r in first.rows} >= {"fg_nmi", "fg_ari", "nmi", "ari", "landmark_error"}
    other = run(RunConfig(method="random", dataset="synthetic", seed=4, dataset_options=SYNTHETIC_TINY),
                out_dir=tmp_path / "a")
    assert _values(other) != _values(first)


def test_finished_run_is_reused_unless_forced(tmp_path):
    config = RunConfig(method="random", dataset="synthetic", dataset_options=SYNTHETIC_TINY, metrics=("nmi",))
    first = run(config, out_dir=tmp_path)
    assert not first.reused and first.path.exists()
    again = run(config, out_dir=tmp_path)
    assert again.reused and _values(again) == pytest.approx(_values(first))
    assert not run(config, out_dir=tmp_path, force=True).reused


def test_parameter_errors_are_user_errors():
    with pytest.raises(UserError, match="has no parameter 'nope'.*num_parts"):
        build_method("random", params={"nope": 1})
    with pytest.raises(UserError, match="malformed parameter"):
        parse_param("novalue")
    assert parse_param("niter=20") == ("niter", 20) and parse_param("weights=random") == ("weights", "random")
    assert parse_param("layers=('relu5_2','relu5_4')") == ("layers", ("relu5_2", "relu5_4"))


def test_mask_policy(tmp_path):
    assert MaskSource.parse("method").dataset_reads is None
    assert MaskSource.parse("method").background == "method"
    assert MaskSource.parse("gt").background == "mask"
    with pytest.raises(UserError, match="not a directory"):
        MaskSource.parse(f"predicted:{tmp_path / 'missing'}")
    for bad in ("sometimes", "predicted:", "gt:x", "none:"):
        with pytest.raises(UserError, match="unknown --masks"):
            MaskSource.parse(bad)
    with pytest.raises(UserError, match="own background channel"):
        run(RunConfig(method="random", dataset="synthetic", masks="method", dataset_options=SYNTHETIC_TINY),
            out_dir=None)


def test_transductive_landmark_fit_uses_the_same_fit_as_the_evaluation(tmp_path):
    import torch

    from benchmark.core.method import Method
    from benchmark.core.types import PartMaps

    class Permuting(Method):
        """Oracle-like parts whose channel order changes with every fit."""

        transductive = True

        def __init__(self, num_parts: int = 8):
            self.num_parts = num_parts

        def fit(self, data, *, seed=0, device="cpu"):
            self.fits_ = getattr(self, "fits_", 0) + 1
            self.perm_ = torch.roll(torch.arange(self.num_parts), self.fits_)
            return self

        def predict(self, batch):
            onehot = torch.nn.functional.one_hot(batch.part_labels, self.num_parts).permute(0, 3, 1, 2).float()
            return PartMaps(onehot[:, self.perm_], image_size=batch.size, kind="probs")

    METHODS.register("test-permuting")(Permuting)
    try:
        config = RunConfig(method="test-permuting", dataset="synthetic", num_parts=8, dataset_options=SYNTHETIC_TINY,
                           metrics=("fg_nmi", "nmi", "landmark_error"))
        with_full = _values(run(config, out_dir=None))["landmark_error"]
        only_fg = _values(run(RunConfig(**{**config.__dict__, "metrics": ("fg_nmi", "landmark_error")}),
                              out_dir=None))["landmark_error"]
        assert with_full == pytest.approx(only_fg)
    finally:
        METHODS.unregister("test-permuting")


def test_changed_files_behind_a_parameter_make_a_new_run(tmp_path):
    """The run key digests the files a method's parameters point to (here: a predictions folder)."""
    from click.testing import CliRunner

    from benchmark.cli import cli

    exported = tmp_path / "exported"
    tiny = [arg for key, value in SYNTHETIC_TINY.items() for arg in ("-o", f"{key}={value}")]
    export = ["export", "-m", "random", "-d", "synthetic", *tiny, "--out", str(exported)]
    assert CliRunner().invoke(cli, export).exit_code == 0
    config = RunConfig(method="predictions", dataset="synthetic", params={"dir": str(exported)},
                       dataset_options=SYNTHETIC_TINY, metrics=("fg_nmi",))
    first = run(config, out_dir=tmp_path / "runs")
    assert run(config, out_dir=tmp_path / "runs").reused
    # export owns its --out: replacing the earlier export there needs --overwrite
    assert CliRunner().invoke(cli, [*export, "--seed", "1", "--overwrite"]).exit_code == 0
    again = run(config, out_dir=tmp_path / "runs")
    assert not again.reused and again.path != first.path



def test_a_landmark_only_run_keeps_examples_from_the_view_it_predicts(tmp_path):
    # The `landmarks` plan's evaluate steps ask only for landmark_error and for example predictions: the
    # examples were taken from the FG view alone, which such a run on CUB (landmarks in the full view) never
    # predicts, so every one of those steps failed with "no example predictions were kept".
    from test_datasets_cub import write_tree

    config = RunConfig(method="random", dataset="cub", data_root=str(write_tree(tmp_path / "CUB_200_2011")),
                       metrics=("landmark_error",))
    result = run(config, out_dir=None, examples=2)
    assert [r["metric"] for r in result.rows] == ["landmark_error"]
    assert result.examples is not None and result.examples["ids"]
