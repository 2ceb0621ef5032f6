// ctxsim labeling page: shows one reference and two candidates, sends the annotator's choice.
// Every vote carries an id made here, so resending it after a network error cannot count twice.
"use strict";

(() => {
  const RETRY_BASE_MS = 500;      // first wait before resending a vote that got no answer
  const RETRY_MAX_MS = 8000;      // longest wait between resends
  const CHOSEN_FLASH_MS = 120;    // how long the clicked candidate stays highlighted
  const KEYS = { ArrowLeft: "left", a: "left", A: "left", ArrowRight: "right", b: "right", B: "right", s: "skip", S: "skip" };

  const $ = (id) => document.getElementById(id);
  const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const api = `/api/${encodeURIComponent(token)}`;
  const task = $("task");
  let current = null;   // the item on screen
  let shownAt = 0;      // when its images finished loading (for response times)

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function voteId() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setStatus(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
  }

  function setState(state) { task.dataset.state = state; }

  function showProgress(p) {
    $("progress-text").textContent = `${p.done} / ${p.total}`;
    $("bar").style.width = p.total ? `${(100 * p.done) / p.total}%` : "100%";
  }

  function loadImage(img, src) {
    if (img.getAttribute("src") === src && img.complete && img.naturalWidth > 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      img.onload = () => resolve(true);
      img.onerror = () => resolve(false);
      img.src = src;
    });
  }

  async function render(state) {
    showProgress(state.progress);
    document.querySelectorAll(".chosen").forEach((el) => el.classList.remove("chosen"));
    if (state.done) {
      current = null;
      task.hidden = true;
      $("done").hidden = false;
      $("done-text").textContent = `You gave ${state.progress.done} answers.`;
      setState("done");
      return;
    }
    current = state.item;
    task.dataset.tripletId = current.triplet_id;
    task.dataset.presentation = String(current.presentation);
    setState("loading");
    const loaded = await Promise.all([
      loadImage($("ref"), current.ref),
      loadImage($("left-img"), current.left),
      loadImage($("right-img"), current.right),
    ]);
    setStatus(loaded.every(Boolean) ? "" : "An image failed to load; please press Skip.", !loaded.every(Boolean));
    shownAt = performance.now();
    setState("ready");
  }

  async function request(path, options) {
    const response = await fetch(`${api}/${path}`, options);
    const body = await response.json().catch(() => ({}));
    return { response, body };
  }

  async function fetchNext() {
    for (let attempt = 0; ; attempt++) {
      try {
        const { response, body } = await request("next");
        if (response.status === 403) { fatal(body.detail || "Unknown annotator link."); return; }
        if (!response.ok) throw new Error(body.detail || response.statusText);
        setStatus("");
        await render(body);
        return;
      } catch (err) {
        setStatus(`Cannot reach the server (${err.message}); retrying…`, true);
        await sleep(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt));
      }
    }
  }

  async function vote(choice) {
    if (current === null || task.dataset.state !== "ready") return;
    setState("sending");
    if (choice !== "skip") $(choice).classList.add("chosen");
    const payload = JSON.stringify({
      vote_id: voteId(),
      triplet_id: current.triplet_id,
      presentation: current.presentation,
      choice,
      elapsed_ms: Math.round(performance.now() - shownAt),
    });
    await sleep(CHOSEN_FLASH_MS);
    for (let attempt = 0; ; attempt++) {
      try {
        const { response, body } = await request("votes", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: payload,
        });
        if (response.ok) { setStatus(""); await render(body); return; }
        if (response.status >= 500) throw new Error(body.detail || response.statusText);
        if (response.status === 403) { fatal(body.detail || "Unknown annotator link."); return; }
        setStatus(body.detail || response.statusText, true);  // refused: not retried
        await fetchNext();
        return;
      } catch (err) {
        // Same vote id on every resend: the server stores it at most once.
        setStatus(`Vote not confirmed yet (${err.message}); retrying…`, true);
        await sleep(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt));
      }
    }
  }

  function fatal(message) {
    current = null;
    task.hidden = true;
    setState("error");
    setStatus(message, true);
  }

  document.querySelectorAll("[data-choice]").forEach((el) =>
    el.addEventListener("click", () => vote(el.dataset.choice)));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const choice = KEYS[event.key];
    if (choice) { event.preventDefault(); vote(choice); }
  });

  fetchNext();
})();
