// The preview gallery: pages of pair cards, filterable by concept. Data comes from the inline JSON
// block; every text is set with textContent (captions and concepts come from model output).
(function () {
  "use strict";
  const PAGE_SIZE = 12;
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const gallery = document.getElementById("gallery");
  const filterBox = document.getElementById("concept-filter");
  const info = document.getElementById("page-info");
  const prev = document.getElementById("prev-page");
  const next = document.getElementById("next-page");
  let page = 0;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function matches(pair, query) {
    if (!query) return true;
    return pair.concepts.some((c) => c.name.toLowerCase().includes(query));
  }

  function card(pair) {
    const box = el("div", { class: "card", "data-pair": pair.pair_id });
    if (pair.thumb) {
      box.appendChild(el("img", { class: "thumb", src: pair.thumb, alt: pair.image_id, loading: "eager" }));
    } else {
      box.appendChild(el("div", { class: "noimg" }, pair.image_error || "no image"));
    }
    box.appendChild(el("div", { class: "caption" }, pair.caption || ""));
    if (pair.mix) {
      box.appendChild(el("div", {}, "mix"));
      box.appendChild(el("audio", { controls: "", preload: "none", src: pair.mix, class: "mix" }));
    } else if (pair.mix_error) {
      box.appendChild(el("div", { class: "unavailable" }, "mix: " + pair.mix_error));
    }
    const list = el("ul");
    pair.concepts.forEach((c, i) => {
      const item = el("li");
      const chip = el("button", { class: "chip", type: "button", title: c.description || "" }, c.name);
      chip.addEventListener("click", () => { filterBox.value = c.name; page = 0; render(); });
      item.appendChild(chip);
      item.appendChild(el("span", {}, ` s=${c.similarity.toFixed(3)} r=${c.score.toFixed(3)} τ=${c.threshold.toFixed(3)}`));
      item.appendChild(el("div", { class: "meta" }, c.clip_id));
      const src = pair.source_audio[i];
      if (src && src.path) item.appendChild(el("audio", { controls: "", preload: "none", src: src.path, class: "source" }));
      else if (src && src.error) item.appendChild(el("div", { class: "unavailable" }, src.error));
      list.appendChild(item);
    });
    box.appendChild(list);
    box.appendChild(el("div", { class: "meta" }, pair.pair_id));
    return box;
  }

  function render() {
    const query = filterBox.value.trim().toLowerCase();
    const shown = data.pairs.filter((p) => matches(p, query));
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    page = Math.min(Math.max(page, 0), pages - 1);
    gallery.replaceChildren(...shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE).map(card));
    info.textContent = `page ${page + 1} of ${pages} (${shown.length} of ${data.pairs.length} pairs)`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    const hash = new URLSearchParams();
    if (query) hash.set("concept", query);
    if (page) hash.set("page", String(page + 1));
    history.replaceState(null, "", hash.toString() ? "#" + hash.toString() : location.pathname);
  }

  const start = new URLSearchParams(location.hash.slice(1));
  filterBox.value = start.get("concept") || "";
  page = Math.max(0, parseInt(start.get("page") || "1", 10) - 1);
  filterBox.addEventListener("input", () => { page = 0; render(); });
  prev.addEventListener("click", () => { page -= 1; render(); });
  next.addEventListener("click", () => { page += 1; render(); });
  render();
})();
