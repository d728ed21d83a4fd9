"""CLI commands for using a trained model: ``retrieve``, ``encode``, ``bank``, ``report`` and ``models``.

A thin shell over :mod:`vsekit.retrieval` and :mod:`vsekit.report`, added to
the ``vsekit`` group through the built-in ``register_commands`` hook. MODEL is
a run folder, a checkpoint, or an installed model's name; left out, it is
``$VSEKIT_MODEL`` or the only installed model (``vsekit models`` lists them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

MODEL_HELP = "run folder, checkpoint or installed model (default: $VSEKIT_MODEL or the only installed model)"


def _model_arg(f: Any) -> Any:
    return click.argument("model", required=False, metavar="[MODEL]")(f)


@click.command("retrieve")
@_model_arg
@click.option("--image", type=click.Path(path_type=Path), help="Query with an image file: its best captions.")
@click.option("--text", help="Query with a caption: its best images.")
@click.option("--features", "features_file", type=click.Path(path_type=Path),
              help="Query with a row of precomputed image features (.npy, N x dim_image).")
@click.option("--row", type=click.IntRange(min=0), default=0, show_default=True, help="The row of --features.")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=5, show_default=True, help="How many results.")
@click.option("--bank", "bank_path", type=click.Path(path_type=Path),
              help="Search this bank (NAME.json + NAME.safetensors) instead of the model's default one.")
@click.option("--search", type=click.Choice(["captions", "images"]),
              help="What to search (default: captions for an image, images for a text or an arithmetic query).")
@click.option("--minus", multiple=True, metavar="WORD", help="Subtract a word's embedding (repeatable).")
@click.option("--plus", multiple=True, metavar="WORD", help="Add a word's embedding (repeatable).")
@click.option("--extractor", metavar="NAME", help="Image feature extractor for --image (default: the one the model "
              "records; required when it records none).")
@click.option("--images-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where result images lie (for --html thumbnails).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write an HTML page of the query and its results.")
@click.option("--embed-images", is_flag=True, help="Embed thumbnails in the HTML as data URIs (self-contained file).")
def retrieve_cmd(model: str | None, image: Path | None, text: str | None, features_file: Path | None, row: int,
                 k: int, bank_path: Path | None, search: str | None, minus: tuple[str, ...], plus: tuple[str, ...],
                 extractor: str | None, images_dir: Path | None, as_json: bool, html_out: Path | None,
                 embed_images: bool) -> None:
    """Captions for an image (--image), images for a caption (--text), with optional word arithmetic.

    \b
      vsekit retrieve --image photo.jpg -k 5
      vsekit retrieve runs/flickr8k --text "a dog runs on the beach" --json
      vsekit retrieve --image car.jpg --minus blue --plus red --bank my_photos
    """
    from vsekit import retrieval
    from vsekit.errors import VsekitError

    given = [n for n, v in (("--image", image), ("--text", text), ("--features", features_file)) if v is not None]
    if len(given) != 1:
        raise VsekitError("give one query: --image PATH, --text TEXT or --features FILE.npy"
                          + (f" (got {' and '.join(given)})" if given else ""))
    if image is not None and not image.is_file():
        raise VsekitError(f"{image}: no such image file")
    r = retrieval.Retriever.load(model, extractor=extractor)
    bank = retrieval.load_bank(bank_path, r.model) if bank_path is not None else None
    if bank is not None and search is not None and search != bank.kind:
        raise VsekitError(f"--search {search}, but {bank.path} is a bank of {bank.kind}")
    kind = search or (bank.kind if bank is not None else
                      ("images" if text is not None or minus or plus else "captions"))
    if image is not None:
        vec = r.embed_image(image)
    elif features_file is not None:
        feats = retrieval.read_features(features_file)
        if row >= len(feats):
            raise VsekitError(f"{features_file}: --row {row}, but the file has {len(feats)} rows")
        vec = retrieval.embed_features(r.model, feats[row])
    else:
        vec = r.embed_text(text)  # type: ignore[arg-type]
    if minus or plus:
        vec = retrieval.arithmetic(r.model, vec, minus, plus)
    bank = bank if bank is not None else r.bank(kind)
    hits = bank.search(vec, k)
    roots = (images_dir, bank.meta.get("image_root"))
    query_id = image.name if image is not None else None
    rows = []
    for h in hits:
        d = h.to_dict()
        path = retrieval.find_image(h.id, *roots)
        d["image"] = str(path) if path else None
        d["ground_truth"] = bool(query_id and h.id == query_id)
        rows.append(d)
    query: dict[str, Any] = {"image": str(image) if image else None, "text": text,
                             "features": str(features_file) if features_file else None,
                             "row": row if features_file else None, "minus": list(minus), "plus": list(plus)}
    if html_out is not None:
        from vsekit import report

        qkind = ("text" if text is not None else "image") + ("-to-text" if kind == "captions" else "-to-image")
        results = [report.Result(d["rank"], d["score"], d["text"], d["id"],
                                 Path(d["image"]) if d["image"] else None, d["ground_truth"]) for d in rows]
        label = text if text is not None else (str(image) if image else f"{features_file} row {row}")
        if minus or plus:
            label = " ".join([label] + [f"− {w}" for w in minus] + [f"+ {w}" for w in plus])
        q = report.Query(qkind, results, text=label if text is not None or minus or plus else None,
                         id=None if image is not None else (f"{features_file} row {row}" if features_file else None),
                         image=image)
        report.write_html(html_out, "vsekit retrieve", [q], embed_images=embed_images,
                          intro=[f"model: {r.ref.path if r.ref else '?'}",
                                 f"bank: {bank.path or '(in memory)'} ({len(bank)} {bank.kind})"])
    if as_json:
        click.echo(json.dumps({"model": str(r.ref.path) if r.ref else None, "bank": str(bank.path) if bank.path else None,
                               "bank_size": len(bank), "search": kind, "k": k, "query": query, "results": rows,
                               "html": str(html_out) if html_out else None}, indent=1, ensure_ascii=False))
        return
    what = f"{len(bank)} {bank.kind}" + (f" in {bank.path}" if bank.path else "")
    click.echo(f"top {len(hits)} of {what}:")
    for d in rows:
        label = d["text"] if kind == "captions" else d["id"]
        extra = f"  [{d['id']}]" if kind == "captions" and d["id"] else ""
        mark = "  ✓" if d["ground_truth"] else ""
        click.echo(f"{d['rank']:>3}  {d['score']:.3f}  {label}{extra}{mark}")
    if html_out is not None:
        click.echo(f"html: {html_out}")


ENCODE_SUFFIXES = (".npy", ".npz")


@click.command("encode")
@_model_arg
@click.option("--captions", "captions_file", type=click.Path(path_type=Path),
              help="Captions: one a line, or CSV with header image,caption.")
@click.option("--features", "features_file", type=click.Path(path_type=Path), help="Image feature rows (.npy).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="OUT.npy (the embeddings) or OUT.npz (embeddings, plus the texts and ids or the feature rows).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True)
def encode_cmd(model: str | None, captions_file: Path | None, features_file: Path | None, output: Path,
               dtype: str) -> None:
    """Write the unit-norm embeddings of captions or image features to OUT.npy or OUT.npz, row i for input i.

    \b
    Captions follow one rule for line files: trailing blank lines are ignored,
    any other empty caption is refused by line number, so rows match lines.
    OUT.npz holds "embeddings" (N, dim) and, for captions, "texts" (and "ids"
    for an image,caption CSV), for features "rows" (their row numbers).
    """
    import numpy as np

    from vsekit import retrieval
    from vsekit.data.vocab import UNK
    from vsekit.errors import VsekitError
    from vsekit.model import encode_images, encode_sentences
    from vsekit.io import atomic_write

    if (captions_file is None) == (features_file is None):
        raise VsekitError("give one input: --captions FILE or --features FILE.npy")
    suffix = output.suffix.lower()
    if suffix not in ENCODE_SUFFIXES:
        raise VsekitError(f"{output}: cannot write {suffix or 'a file without a suffix'!r}: -o takes "
                          f"{' or '.join(ENCODE_SUFFIXES)} (.npz: embeddings with their texts/ids)")
    # read the input before loading the model: a missing file fails fast
    if captions_file is not None:
        texts, ids = retrieval.read_captions(captions_file)
    else:
        feats = retrieval.read_features(features_file)  # type: ignore[arg-type]
    m, _, _ = retrieval.load_model(model)
    if captions_file is not None:
        emb = encode_sentences(m, texts, verbose=True)
        if not getattr(m.sentence_encoder, "needs_texts", False):
            unread = [i for i, toks in enumerate(m.tokens(texts))
                      if all(t == UNK for t in m.vocab.encode(toks, m.n_words))]
            if unread:
                first = unread[0] + (2 if ids is not None else 1)
                click.echo(f"warning: {captions_file}: {len(unread)} caption(s) with no word the model knows "
                           f"(first: line {first}); their rows say nothing about them", err=True)
    else:
        emb = encode_images(m, feats)
    emb = emb.astype(dtype)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            if suffix == ".npy":
                np.save(fh, emb, allow_pickle=False)
            elif captions_file is not None:
                extra = {"ids": np.array(ids, dtype=str)} if ids is not None else {}
                np.savez(fh, embeddings=emb, texts=np.array(texts, dtype=str), **extra)
            else:
                np.savez(fh, embeddings=emb, rows=np.arange(len(emb), dtype=np.int64))

    atomic_write(output, write)
    click.echo(f"wrote {output}: {emb.shape[0]} x {emb.shape[1]} {dtype}")


@click.command("bank")
@_model_arg
@click.option("--captions", "captions_file", type=click.Path(path_type=Path),
              help="Captions: one a line, or CSV with header image,caption (e.g. Flickr8K's captions.txt).")
@click.option("--features", "features_file", type=click.Path(path_type=Path), help="Image feature rows (.npy).")
@click.option("--ids", "ids_file", type=click.Path(path_type=Path), help="With --features: one image id a line.")
@click.option("--images", multiple=True, type=click.Path(path_type=Path),
              help="Image files or folders (repeatable): features by the model's image feature extractor.")
@click.option("--image-root", type=click.Path(file_okay=False, path_type=Path),
              help="With --features: the folder the ids are file names in (for thumbnails).")
@click.option("--extractor", metavar="NAME", help="Image feature extractor for --images.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="BANK: writes BANK.json + BANK.safetensors (default: the model's default bank).")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
def bank_cmd(model: str | None, captions_file: Path | None, features_file: Path | None, ids_file: Path | None,
             images: tuple[Path, ...], image_root: Path | None, extractor: str | None, output: Path | None,
             dtype: str) -> None:
    """Encode a caption bank (--captions) or an image bank (--features + --ids, or --images) once.

    With no input, builds the model's default caption bank (its captions file,
    or its training split) where retrieve looks for it.
    """
    from vsekit import retrieval
    from vsekit.errors import VsekitError

    sources = [n for n, v in (("--captions", captions_file), ("--features", features_file), ("--images", images)) if v]
    if len(sources) > 1:
        raise VsekitError(f"give one input, not {' and '.join(sources)}")
    if features_file is not None and ids_file is None:
        raise VsekitError("--features needs --ids (one image id a line, in row order)")
    if captions_file is not None:
        texts, ids = retrieval.read_captions(captions_file)
    elif features_file is not None:
        feats = retrieval.read_features(features_file)
        fids = retrieval.read_ids(ids_file)  # type: ignore[arg-type]
    elif images:
        files, folder = retrieval.image_files(images)
    r = retrieval.Retriever.load(model, extractor=extractor)
    if captions_file is not None:
        bank: retrieval.Bank = retrieval.build_caption_bank(r.model, texts, ids, dtype=dtype,
                                                            source=str(captions_file), verbose=True)
    elif features_file is not None:
        bank = retrieval.build_image_bank(r.model, feats, fids, dtype=dtype, image_root=image_root,
                                          source=str(features_file))
    elif images:
        feats = r.image_features(files)
        ids = [f.relative_to(folder).as_posix() if folder else str(f.resolve()) for f in files]
        table = retrieval.extractor_table(r.meta, r.model.dim_image, extractor)
        bank = retrieval.build_image_bank(r.model, feats, ids, dtype=dtype, image_root=folder, extractor=table,
                                          source=", ".join(str(p) for p in images))
    else:
        bank = r.build_default_bank("captions")
    target = output if output is not None else r._save_target(bank.kind)
    if target is None:
        raise VsekitError("give -o BANK: this model has no folder for a default bank")
    path = bank.save(target)
    click.echo(f"wrote {path} ({len(bank)} {bank.kind}, {bank.dim}-d {bank.dtype})")


@click.command("report")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Folder (default: RUN/report).")
@click.option("--split", default="test", show_default=True)
@click.option("-n", "--queries", "n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Queries per direction.")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--images-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the split's image files, for thumbnails (the flickr8k reader knows its own).")
@click.option("--embed-images", is_flag=True, help="Embed thumbnails as data URIs (self-contained page).")
def report_cmd(run: Path, output: Path | None, split: str, n: int, k: int, images_dir: Path | None,
               embed_images: bool) -> None:
    """Training curves (curves.png) and a gallery of test queries (gallery.html) for a run folder."""
    from vsekit.report import write_report

    res = write_report(run, output, split=split, n=n, k=k, images_dir=images_dir, embed_images=embed_images)
    if res["curves"] is not None:
        click.echo(f"curves: {res['curves']}")
    else:
        click.echo(f"curves: skipped ({res['curves_skipped']})", err=True)
    click.echo(f"gallery: {res['gallery']}")


@click.command("models")
@click.option("--json", "as_json", is_flag=True)
def models_cmd(as_json: bool) -> None:
    """List installed models (packages exposing the entry-point group vsekit.models)."""
    from vsekit import retrieval
    from vsekit.errors import VsekitError

    out = []
    for name, ep in retrieval.installed_models().items():
        try:
            path, problem = str(retrieval.installed_model_path(name, ep)), None
        except VsekitError as exc:
            path, problem = None, str(exc)
        out.append({"name": name, "value": ep.value, "distribution": ep.dist.name if ep.dist else None,
                    "version": ep.dist.version if ep.dist else None, "path": path, "problem": problem})
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    if not out:
        click.echo("no installed models (e.g. pip install vsekit-f8k)")
    for m in out:
        dist = f" [{m['distribution']} {m['version']}]" if m["distribution"] else ""
        click.echo(f"{m['name']}{dist}: {m['path'] or 'error: ' + str(m['problem'])}")


COMMANDS = (retrieve_cmd, encode_cmd, bank_cmd, report_cmd, models_cmd)


def add_commands(cli: click.Group) -> None:
    """Add the commands to the ``vsekit`` group (called through the built-in ``register_commands`` hook)."""
    for cmd in COMMANDS:
        if cmd.name not in cli.commands:
            cli.add_command(cmd)
