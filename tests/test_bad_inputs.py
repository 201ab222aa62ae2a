"""A catalogue of bad inputs across every command: each ends with exit status 2, one line `error: ...`,
no traceback and nothing left behind; and every numeric option is range-checked at the CLI edge."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from benchmark.cli import cli

TINY = ["-o", "num_train=8", "-o", "num_test=8", "-o", "image_size=32"]
TRAIN = ["train", "-d", "synthetic", "--preset", "tiny", "--init", "random", "-p", "vgg_weights=random", *TINY]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Valid and damaged inputs, outside the folder the commands run in."""
    root = tmp_path_factory.mktemp("inputs")
    runs = root / "runs"
    result = CliRunner().invoke(cli, ["run", "-m", "random", "-d", "synthetic", *TINY, "--out", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    damaged = root / "damaged.csv"
    text = next(runs.rglob("*.csv")).read_text()
    damaged.write_text(text[: len(text) // 2])
    cub = root / "CUB_200_2011"
    cub.mkdir()
    junk = root / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    return {"RUNS": str(runs), "DAMAGED": str(damaged), "EMPTYDIR": str(cub), "JUNK": str(junk)}


CATALOGUE = [
    # run
    ("run -m nope -d synthetic", "unknown method 'nope'"),
    ("run -m random -d nope", "unknown dataset 'nope'"),
    ("run -m random -d synthetic -p oops", "malformed parameter 'oops'"),
    ("run -m random -d synthetic -p zzz=1", "has no parameter 'zzz'"),
    ("run -m random -d synthetic -p resolution=abc", "must be an integer"),
    ("run -m random -d synthetic -o foo=1", "has no option 'foo'"),
    ("run -m random -d synthetic -o num_test=abc", "must be an integer"),
    ("run -m random -d synthetic -o masks=none", "give the masks with --masks"),
    ("run -m random -d synthetic --data-root /no/such/dir", "does not exist"),
    ("run -m random -d synthetic --eval-batch-size 0", "--eval-batch-size"),
    ("run -m random -d synthetic --eval-batch-size -1", "--eval-batch-size"),
    ("run -m random -d synthetic --batch-size 0", "--eval-batch-size"),
    ("run -m random -d synthetic -k 0", "--num-parts"),
    ("run -m random -d synthetic -k -1", "--num-parts"),
    ("run -m random -d synthetic --num-workers -1", "--num-workers"),
    ("run -m random -d synthetic --seed -1", "seeds must be >= 0"),
    ("run -m random -d synthetic --seed 4-1", "empty --seed range"),
    ("run -m random -d synthetic --seed abc", "malformed --seed"),
    ("run -m random -d synthetic --protocol foo", "--protocol"),
    ("run -m random -d synthetic --masks bogus", "unknown --masks 'bogus'"),
    ("run -m random -d synthetic --masks predicted:/no/such", "is not a directory"),
    ("run -m random -d synthetic --device tpu", "unknown --device 'tpu'"),
    ("run -m random -d synthetic --metric nope", "unknown metric 'nope'"),
    ("run -m random -d synthetic --checkpoint /no/such.pt", "--checkpoint"),
    ("run -m random -d synthetic -o num_test=0 -o num_train=8 -o image_size=32 -q", "no full pixels to score"),
    ("run -m predictions -d synthetic", "-p dir=DIR"),
    ("run -m predictions -d synthetic -p dir=/no/such", "does not exist"),
    ("run -m random -d synthetic --nope", "No such option '--nope'"),
    # report
    ("report /no/such/runs", "does not exist"),
    ("report RUNS --decimals -3", "--decimals"),
    ("report RUNS --format pdf", "--format"),
    ("report RUNS --name ../x", "--name"),
    ("report DAMAGED", "damaged result file"),
    ("report EMPTYDIR", "no result files found"),
    # sweep
    ("sweep -m random -d synthetic --seed 4-1", "empty --seed range"),
    ("sweep -m random -d synthetic --num-workers 0", "--num-workers"),
    ("sweep -m random -d synthetic -k 0", "--num-parts"),
    ("sweep -m random -d synthetic -p nope=1", "has a parameter 'nope'"),
    ("sweep -m random -d synthetic --eval-batch-size 0", "--eval-batch-size"),
    ("sweep -m random -d synthetic --executor pbs", "--executor"),
    # train
    ("TRAIN --steps 0", "--steps"),
    ("TRAIN --steps -1", "--steps"),
    ("TRAIN -p checkpoint_every=0", "'checkpoint_every' must be >= 1"),
    ("TRAIN -p steps=-2", "'steps' must be >= 1"),
    ("TRAIN --train-batch-size 0", "--train-batch-size"),
    ("TRAIN --image-size -1", "--image-size"),
    ("TRAIN --ablate everything", "--ablate"),
    ("train -m random -d synthetic", "cannot be trained"),
    # export
    ("export -m random -d synthetic", "Missing option '--out'"),
    ("export -m random -d synthetic --out E --eval-batch-size 0", "--eval-batch-size"),
    ("export -m predictions -d synthetic --out E", "export the method that produced the maps"),
    ("export -m random -d synthetic --out E --view side", "--view"),
    # bench
    ("bench metrics -p n=-5", "'n' must be >= 1"),
    ("bench metrics -p n=0", "'n' must be >= 1"),
    ("bench metrics -p n=abc", "must be an integer"),
    ("bench metrics -p zzz=1", "has no option zzz"),
    ("bench nope", "unknown benchmark 'nope'"),
    # data
    ("data check -d cub --data-root /no/such/dir", "does not exist"),
    ("data check -d cub --data-root EMPTYDIR --max-problems 0", "--max-problems"),
    ("data download nope", "nope"),
    ("data download cub", "pass --out DIR"),
    # issue 23: sizes and values out of range are one line, not a traceback or an out-of-memory kill
    ("run -m random -d synthetic -o image_size=100000 --out R", "'image_size' must be >= 16 and <= 2048"),
    ("run -m random -d synthetic -o image_size=[64] --out R", "'image_size' must be an integer"),
    ("run -m random -d synthetic -k 1000000 --out R", "--num-parts"),
    ("sweep -m random -d synthetic -k 1000000 --out S", "--num-parts"),
    ("run -m random -d synthetic -p resolution=-1 --out R", "'resolution' must be >= 0"),
    ("run -m random -d synthetic --seed 0-99999999 --out R", "more than 10,000 seeds"),
    ("sweep -m random -d synthetic --seed 0-99999999 --out S", "more than 10,000 seeds"),
    ("TRAIN -p lr=-1 --out T", "'lr' must be > 0"),
    ("bench metrics -p n=1000000000000", "GiB of memory"),
    ("data download cub --out /proc/x", "/proc/x is not writable"),
    ("run -m random -d synthetic -o num_train=0 -o num_test=8 -o image_size=32 -q --out R",
     "the landmark regression has no images to fit the regression on"),
    # issue 23: a command that fails after its checks leaves no new --out folder (nor a mask cache folder)
    ("export -m random -d synthetic -o foo=1 --out E", "has no option 'foo'"),
    ("export -m random -d synthetic -p resolution=-1 --out E", "'resolution' must be >= 0"),
    ("sweep -m random -d synthetic -o foo=1 --out S", "has no option 'foo'"),
    ("TRAIN -o foo=1 --out T", "has no option 'foo'"),
    ("masks predict --source unsupervised:nope -d synthetic --out M", "unknown unsupervised mask source 'nope'"),
    ("masks score --masks predicted:/no/such -d synthetic --out M", "does not exist"),
    ("demo --device tpu --out D", "unknown --device 'tpu'"),
    ("data download cub --url nope=x --out D", "no archive named 'nope'"),
    ("run -m random -d synthetic -o num_train=8 -o num_test=8 -o image_size=32 -q --masks model:JUNK "
     "--cache-dir C --out R", "fg/bg checkpoint"),
    ("sweep -m random -d synthetic --executor slurm --out S", "--executor slurm"),
    # demo, top level
    ("demo --seed -1", "--seed"),
    ("demo --method nope", "unknown method 'nope'"),
    ("nope", "No such command 'nope'"),
]


def test_the_catalogue_is_large_and_covers_every_command():
    assert len(CATALOGUE) >= 40
    commands = {line.split()[0] for line, _ in CATALOGUE}
    assert {"run", "report", "sweep", "TRAIN", "train", "export", "bench", "data", "demo"} <= commands


@pytest.mark.parametrize("line, message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(line, message, inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path.parent / f"{tmp_path.name}-torch"))
    args = []
    for word in line.split():
        kind, _, name = word.rpartition(":")  # e.g. model:JUNK
        word = f"{kind}:{inputs[name]}" if kind and name in inputs else inputs.get(word, word)
        args += TRAIN if word == "TRAIN" else [word]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [text for text in result.output.strip().splitlines() if not text.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0], lines[0]
    leftovers = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")]
    assert not leftovers, leftovers


# -- every numeric option of every command, walked through 0 and -1 ---------------------------------------
REQUIRED = {
    "run": ["-m", "random", "-d", "synthetic"],
    "sweep": ["-m", "random", "-d", "synthetic"],
    "export": ["-m", "random", "-d", "synthetic", "--out", "E"],
    "train": ["-d", "synthetic"],
    "report": ["RUNS"],
    "demo": [],
    "data check": ["-d", "cub", "--data-root", "EMPTYDIR"],
    "data download": ["cub"],
}


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _numeric_cases():
    cases = []
    for path, command in _commands(cli):
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            if isinstance(param.type, click.types._NumberParamTypeBase) or param.name in ("seeds",):
                for value in ("0", "-1"):
                    cases.append((path, param.opts[0], value))
    return cases


def test_every_numeric_option_is_declared_with_a_range():
    unchecked = []
    for path, command in _commands(cli):
        for param in command.params:
            if isinstance(param, click.Option) and param.type is click.INT:
                unchecked.append(f"{path} {param.opts[0]}")
    assert not unchecked, f"integer options without a click range: {unchecked}"


@pytest.mark.parametrize("command, option, value", _numeric_cases(), ids=lambda v: str(v))
def test_numeric_options_through_zero_and_minus_one(command, option, value, inputs, tmp_path, monkeypatch):
    from benchmark.cli import cli as root

    group_path = command.split()
    target = root
    for part in group_path:
        target = target.commands[part]
    param = next(p for p in target.params if option in p.opts)
    lowest = getattr(param.type, "min", None)
    if param.name == "seeds" or option == "--seed":
        lowest = 0
    if lowest is None:
        pytest.fail(f"{command} {option} has no lower bound")
    if int(value) >= lowest:
        return  # a valid value (e.g. --num-workers 0, --seed 0): not an error, and not run here
    monkeypatch.chdir(tmp_path)
    args = group_path + [inputs.get(a, a) for a in REQUIRED.get(command, [])] + [option, value]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = [text for text in result.output.strip().splitlines() if not text.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert option in lines[0] or (option == "--seed" and "seed" in lines[0]), lines[0]
    assert not list(tmp_path.rglob("*"))


# -- one rule for every command that would train a method first (issue 23) --------------------------------
@pytest.mark.parametrize("command", ["run", "sweep", "export"])
def test_a_method_that_would_train_on_the_cpu_is_refused_by_every_command(command, tmp_path, monkeypatch):
    from benchmark.core.registry import METHODS

    # The estimate measures a training step (seconds); its text is what matters here.
    monkeypatch.setattr(METHODS.get("ours"), "training_estimate",
                        classmethod(lambda cls, params, where: "about 65 days"), raising=False)
    monkeypatch.setattr(METHODS.get("ours"), "training_seconds",
                        classmethod(lambda cls, params, where: 65 * 86400.0), raising=False)
    monkeypatch.chdir(tmp_path)
    args = [command, "-m", "ours", "-d", "synthetic", "-p", "preset=tiny", "-p", "steps=1", "-p", "init=random",
            "-p", "vgg_weights=random", *TINY, "--device", "cpu", "--out", "OUT", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = [text for text in result.output.strip().splitlines() if not text.startswith("warning:")]
    assert len(lines) == 1 and "about 65 days" in lines[0] and "--train-if-missing" in lines[0], result.output
    assert not list(tmp_path.iterdir())


def test_declared_parameter_ranges_name_real_parameters():
    """A range for a misspelt parameter would silently check nothing."""
    import inspect

    from benchmark.core.registry import DATASETS, MASK_MODELS, METHODS

    for registry in (METHODS, DATASETS, MASK_MODELS):
        for name, cls in registry.items():
            parameters = set(inspect.signature(cls.__init__).parameters)
            assert set(cls.param_ranges) <= parameters, (name, set(cls.param_ranges) - parameters)


@pytest.mark.parametrize("seconds, refused", [(None, True), (601.0, True), (600.0, False), (3.0, False)])
def test_a_cpu_training_estimated_at_ten_minutes_or_less_starts_by_itself(seconds, refused, monkeypatch):
    """The refusal's advice (-p preset=tiny, fewer steps) has to work: a short estimated training starts with a
    note; a long or unmeasured one is refused."""
    from benchmark.core.registry import METHODS
    from benchmark.core.errors import UserError
    from benchmark.training_cost import check_training_cost

    cls = METHODS.get("ours")
    monkeypatch.setattr(cls, "training_estimate", classmethod(lambda c, params, where: "N steps, about X"))
    monkeypatch.setattr(cls, "training_seconds", classmethod(lambda c, params, where: seconds))
    notes = []
    params = {"preset": "tiny", "init": "random", "vgg_weights": "random"}
    if refused:
        with pytest.raises(UserError, match=r"N steps, about X\. Pass --checkpoint PATH, -p preset=tiny or fewer "
                                            r"-p steps=N \(a training estimated at 10 min or less starts by itself\)"):
            check_training_cost("ours", 4, params, "cpu", False, notes.append)
    else:
        check_training_cost("ours", 4, params, "cpu", False, notes.append)
        assert notes == ["note: 'ours' has no --checkpoint; training it first: N steps, about X"]
    notes.clear()
    check_training_cost("ours", 4, params, "cpu", True, notes.append)  # --train-if-missing: always, with the note
    assert len(notes) == 1
