"""HTML result pages and run reports.

* :mod:`~vsekit.report.pages`: :func:`write_html` writes one self-contained
  page of queries and ranked results as cards (``vsekit retrieve --html``,
  ``vsekit report``, ``vsekit compare``): no scripts, no external resources;
  thumbnails are relative file paths, or base64 data URIs with
  ``embed_images=True``.
* :mod:`~vsekit.report.curves`: ``curves.png`` from ``metrics.jsonl`` (the
  loss as the mean of each logging window, and the dev rsum, against step;
  needs matplotlib: ``pip install 'vsekit[report]'``).
* :mod:`~vsekit.report.gallery`: :func:`write_report` turns a run folder into
  ``curves.png`` and ``gallery.html`` (test queries in both directions, ground
  truth marked); :func:`write_retrieval_page` is ``vsekit retrieve --html``.

Flickr8K images belong to their owners (research use only, no
redistribution): pages link to the image files the user has (``--images-dir``
or ``$VSEKIT_F8K_IMAGES``), so nothing is copied unless you ask for embedding;
a card without its picture says how to get it.
"""

from __future__ import annotations

from vsekit.report.curves import curves_html, loss_points, plot_curves, read_metrics, report_curves, valid_points
from vsekit.report.gallery import (
    DEV_METRICS,
    Gallery,
    gallery_queries,
    image_hint,
    report_intro,
    retrieval_query,
    write_report,
    write_retrieval_page,
)
from vsekit.report.pages import CSS, THUMB_PX, Query, Result, image_src, render_html, write_html

__all__ = ["CSS", "DEV_METRICS", "THUMB_PX", "Gallery", "Query", "Result", "curves_html", "gallery_queries",
           "image_hint", "image_src", "loss_points", "plot_curves", "read_metrics", "render_html", "report_curves",
           "report_intro", "retrieval_query", "valid_points", "write_html", "write_report", "write_retrieval_page"]
