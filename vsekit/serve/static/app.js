// vsekit serve: the page's only script. Data reaches the page through textContent and attributes only.
"use strict";

const K = 5;
let photo = null; // the File picked or dropped
let info = null;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function call(url, options) {
  const resp = await fetch(url, options);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    throw new Error(body && body.error ? body.error : "the server answered " + resp.status);
  }
  return body;
}

function showError(id, err) {
  document.getElementById(id).textContent = err ? String(err.message || err) : "";
}

function captionCard(row) {
  const li = el("li", "card caption-card");
  li.appendChild(el("p", "text", row.text));
  li.appendChild(el("p", "meta", "#" + row.rank + "  score " + row.score.toFixed(3) + (row.id ? "  [" + row.id + "]" : "")));
  return li;
}

function imageCard(row) {
  const li = el("li", "card image-card");
  if (row.thumb) {
    const img = el("img");
    img.setAttribute("src", row.thumb);
    img.setAttribute("alt", row.id || "result image");
    img.setAttribute("loading", "eager");
    li.appendChild(img);
  } else {
    const hint = info && info.thumbnails
      ? "Image file not found in the images folder."
      : "No image files here: start the server with --images-dir DIR (the folder holding these photos) to see them.";
    li.appendChild(el("p", "hint", hint));
  }
  li.appendChild(el("p", "text", row.id || "(no id)"));
  li.appendChild(el("p", "meta", "#" + row.rank + "  score " + row.score.toFixed(3)));
  return li;
}

function render(listId, rows, card) {
  const list = document.getElementById(listId);
  list.replaceChildren(...rows.map(card));
  list.setAttribute("data-count", String(rows.length));
}

async function searchCaptions() {
  showError("captions-error", null);
  if (!photo) return;
  const form = new FormData();
  form.append("image", photo, photo.name || "photo");
  form.append("k", String(K));
  document.getElementById("captions").setAttribute("aria-busy", "true");
  try {
    const body = await call("/api/captions", { method: "POST", body: form });
    render("captions", body.results, captionCard);
  } catch (err) {
    render("captions", [], captionCard);
    showError("captions-error", err);
  } finally {
    document.getElementById("captions").setAttribute("aria-busy", "false");
  }
}

function pick(file) {
  if (!file) return;
  photo = file;
  document.getElementById("photo-name").textContent = "Photo: " + (file.name || "(dropped image)");
  searchCaptions();
}

async function searchImages(event) {
  event.preventDefault();
  showError("images-error", null);
  const text = document.getElementById("text").value;
  try {
    const body = await call("/api/images", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: text, k: K }),
    });
    render("images", body.results, imageCard);
  } catch (err) {
    render("images", [], imageCard);
    showError("images-error", err);
  }
}

async function searchArithmetic(event) {
  event.preventDefault();
  showError("arith-error", null);
  if (!photo) {
    showError("arith-error", "Pick a photo first (above).");
    return;
  }
  const form = new FormData();
  form.append("image", photo, photo.name || "photo");
  form.append("minus", document.getElementById("minus").value);
  form.append("plus", document.getElementById("plus").value);
  form.append("k", String(K));
  try {
    const body = await call("/api/arithmetic", { method: "POST", body: form });
    render("arith", body.results, imageCard);
  } catch (err) {
    render("arith", [], imageCard);
    showError("arith-error", err);
  }
}

async function loadInfo() {
  const status = document.getElementById("status");
  try {
    info = await call("/api/info");
    let text = "Model " + info.model + ": " + info.captions.size + " captions, " + info.images.size + " images.";
    if (!info.image_queries) text += " Image queries are off: " + info.image_problem;
    if (!info.thumbnails) text += " No thumbnails (start with --images-dir DIR to see the photos).";
    status.textContent = text;
  } catch (err) {
    status.textContent = "The server did not answer: " + err.message;
  }
}

function setup() {
  const drop = document.getElementById("drop");
  document.getElementById("photo").addEventListener("change", (e) => pick(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) pick(e.dataTransfer.files[0]);
  });
  document.getElementById("text-form").addEventListener("submit", searchImages);
  document.getElementById("arith-form").addEventListener("submit", searchArithmetic);
  loadInfo();
}

document.addEventListener("DOMContentLoaded", setup);
