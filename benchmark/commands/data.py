"""``benchmark data check`` and ``benchmark data download``."""

from __future__ import annotations

from pathlib import Path

import click

from benchmark import options as opt
from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, MaskSource


def _raw_pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """``NAME=TEXT`` kept verbatim (URLs and checksums are never literals: ``1234e5`` is not a float)."""
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise UserError(f"{what} {value!r} must look like NAME=VALUE")
        pairs[key.strip()] = rest.strip()
    return pairs


@click.group("data")
def data_group() -> None:
    """Check and download the real datasets (CUB-200-2011, NABirds, DeepFashion In-shop, PASCAL-Part,
    PartImageNet, Flowers-102)."""


def _checked_masks(kind: type[MaskSource]) -> bool:
    """The --masks kinds a data check names: those whose files it reads, and ``none``."""
    return kind.reads_existing_files() or kind.background == "none"


@data_group.command("check")
@opt.dataset_option("cub, nabirds, deepfashion, pascal-part, partimagenet or flowers102")
@opt.data_root_option(required=True, help="root of the dataset tree")
@click.option("--split", "splits", multiple=True, help="only these splits (default: all)")
@opt.category_option()
@opt.masks_option("Mask files checked too (gt, predicted:DIR); none checks none.", accepts=_checked_masks)
@opt.protocol_option("How mask files are read: corrected or legacy (docs/protocol.md).")
@opt.dataset_options_option("dataset option KEY=VALUE (e.g. classes=(1,2,3))")
@click.option("--quick", is_flag=True, help="only check that files exist and have readable headers (no decoding)")
@click.option("--max-problems", type=click.IntRange(min=1), default=200, show_default=True,
              help="how many problems to print")
@opt.quiet_option()
def check_command(dataset, data_root, splits, category, masks, protocol, options, quick, max_problems, quiet) -> None:
    """Validate a data tree: index files (every malformed line), ids that do not match, expected counts per
    split, missing or unreadable files, masks of the wrong size. Prints a summary; exit status 2 when
    something is wrong.

    \b
    Examples:
      benchmark data check -d cub --data-root /data/CUB_200_2011
      benchmark data check -d pascal-part --data-root /data/VOCdevkit_2010 --category car --quick
      benchmark data check -d cub --data-root /data/CUB_200_2011 --masks predicted:/data/CUB_200_2011/supervisedlabels
    """
    from benchmark.datasets._check import check_dataset
    from benchmark.factories import check_dataset_options

    _, opts = opt.command_line_inputs((), options, category=category)
    if MaskSource.parse(masks) != MaskSource.parse(None):
        opts["masks"] = masks
    if protocol != DEFAULT_PROTOCOL:
        opts["protocol"] = protocol
    check_dataset_options(dataset, opts)
    report = check_dataset(dataset, data_root, deep=not quick, splits=tuple(splits) or None, progress=not quiet,
                           **opts)
    click.echo(report.text(max_problems=max_problems))
    if not report.ok:
        raise UserError(f"{len(report.problems)} problem(s) in {data_root}; fix them (see the list above) and "
                        f"run the check again")


@data_group.command("download")
@click.argument("dataset", type=click.Choice(["cub", "pascal-part", "deepfashion", "partimagenet", "nabirds", "flowers102"]))
@opt.out_option(None, "download and extract into this folder")
@click.option("--url", "urls", multiple=True, help="override a location: NAME=URL (cub: images, segmentations; "
                                                     "pascal-part: voc, parts)")
@click.option("--md5", "md5s", multiple=True, help="override an expected checksum: NAME=HEX")
@opt.quiet_option()
def download_command(dataset, out_dir, urls, md5s, quiet) -> None:
    """Download DATASET from its official location (resumable, MD5-checked) and extract it safely.
    DeepFashion and NABirds need an agreement and PartImageNet comes through its authors' links: their steps
    are printed instead.

    \b
    Examples:
      benchmark data download cub --out /data          # then --data-root /data/CUB_200_2011
      benchmark data download pascal-part --out /data --url voc=https://mirror.example/VOCtrainval_03-May-2010.tar
    """
    from benchmark.datasets._download import DATA_ROOT_AFTER, fetch

    if dataset in ("deepfashion", "partimagenet", "nabirds", "flowers102"):  # behind an agreement or a sharing link
        import importlib

        click.echo(importlib.import_module(f"benchmark.datasets.{dataset}").DOWNLOAD_STEPS)
        return
    if out_dir is None:
        raise UserError("pass --out DIR: the folder to download and extract into")
    from benchmark.core.atomic import output_dir

    urls, md5s = _raw_pairs(urls, "--url"), _raw_pairs(md5s, "--md5")
    with output_dir(out_dir) as out:  # a failed download leaves no empty --out folder
        fetch(dataset, out, urls=urls, md5s=md5s, progress=not quiet, log=lambda msg: click.echo(msg, err=True))
    root = (Path(out_dir) / DATA_ROOT_AFTER[dataset]).resolve()
    click.echo(f"done: use --data-root {root}")


commands = [data_group]
