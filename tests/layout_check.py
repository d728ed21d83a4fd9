"""Layout checks in headless Chromium (Playwright): do the texts of different result cards overlap?

:func:`chromium` finds the browser (Debian's ``chromium`` or ``$VSEKIT_CHROMIUM``; nothing is downloaded),
:func:`text_overlaps` takes a loaded Playwright page and returns one line per pair of overlapping text boxes
of two different cards. Any page with result cards can be checked: a card is an element matching
:data:`CARDS` (class ``card``; the static pages' ``li.hit`` results and ``section.query > .q`` query boxes).
"""

from __future__ import annotations

APT = "apt-get install -y chromium"
WIDTHS = (375, 800, 1280)
#: what counts as one card: the shared class, plus the static pages' result items and query boxes
CARDS = ".card, li.hit, section.query > .q"


#: returns [{card, text, x, y, w, h}] for every visible line box of every text node inside a card
_TEXT_BOXES_JS = """
(selector) => {
  const cards = [...document.querySelectorAll(selector)];
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim()) continue;
    const el = node.parentElement;
    const card = el && el.closest(selector);
    if (!card) continue;
    const style = getComputedStyle(el);
    if (style.visibility !== "visible" || style.display === "none" || +style.opacity === 0) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width < 1 || r.height < 1) continue;
      out.push({card: cards.indexOf(card), text: node.textContent.trim().slice(0, 40),
                x: r.left, y: r.top, w: r.width, h: r.height});
    }
  }
  return out;
}
"""


def text_overlaps(page, selector: str = CARDS, tolerance: float = 1.0) -> list[str]:
    """One line per pair of visible text boxes of two different cards that overlap by more than ``tolerance``
    CSS pixels in both directions (``page``: a loaded ``playwright.sync_api.Page``; empty list: a clean page).

    Text boxes are the client rectangles of each text node (``Range.getClientRects``: one per line), so a
    long word running out of its card counts, and a card's own texts never count against each other.
    """
    boxes = page.evaluate(_TEXT_BOXES_JS, selector)
    width = page.viewport_size["width"] if page.viewport_size else "?"
    problems = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a["card"] == b["card"]:
                continue
            dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if dx > tolerance and dy > tolerance:
                problems.append(f"{width}px: card {a['card']} {a['text']!r} overlaps card {b['card']} {b['text']!r} "
                                f"({dx:.0f} x {dy:.0f} px)")
    return problems


def overlaps_at_widths(browser, url: str, widths: tuple[int, ...] = WIDTHS, selector: str = CARDS) -> list[str]:
    """:func:`text_overlaps` of the page at ``url`` at each viewport width (``browser``: a Playwright Browser)."""
    problems = []
    for w in widths:
        page = browser.new_page(viewport={"width": w, "height": 900})
        try:
            page.goto(url, wait_until="load")
            if not page.query_selector(selector):
                problems.append(f"{w}px: no element matches {selector!r}: nothing was checked")
            problems += text_overlaps(page, selector)
        finally:
            page.close()
    return problems
