// The status page: recent jobs with state and progress, refreshed by long-polling the API;
// a completed job shows a <model-viewer> preview of its GLB and download links for every mesh.
const LIST_LIMIT = 20;
const IDLE_MS = 5000;
const POLL_MS = 2000;
// Long-poll seconds; `/?wait=0` polls every POLL_MS instead (for snapshots: a pending long-poll
// keeps a headless browser's page busy).
const WAIT_S = (() => {
  const asked = Number(new URLSearchParams(window.location.search).get("wait") ?? 20);
  return Number.isFinite(asked) ? Math.max(0, Math.min(60, asked)) : 20;
})();
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);

const state = { jobs: [], selected: null, shownModel: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function safeUrl(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function fractionOf(job) {
  if (job.status === "COMPLETED") return 1;
  const p = job.progress && typeof job.progress === "object" ? job.progress : {};
  let f = Number(p.fraction ?? p.progress ?? 0);
  if (!Number.isFinite(f)) f = 0;
  if (f > 1) f /= 100;
  return Math.max(0, Math.min(1, f));
}

function stageOf(job) {
  const p = job.progress && typeof job.progress === "object" ? job.progress : {};
  const eta = p.eta_s ?? p.eta_seconds;
  const etaText = typeof eta === "number" && !TERMINAL.has(job.status) ? ` · eta ${Math.round(eta)} s` : "";
  return (p.stage ? String(p.stage) : "") + etaText;
}

function timeText(seconds) {
  if (typeof seconds !== "number") return "";
  return new Date(seconds * 1000).toLocaleTimeString();
}

function renderRows() {
  const body = document.getElementById("job-rows");
  body.replaceChildren();
  document.getElementById("empty").hidden = state.jobs.length > 0;
  for (const job of state.jobs) {
    const fraction = fractionOf(job);
    const bar = el("div", { class: job.status === "COMPLETED" ? "bar done" : "bar" }, el("span"));
    bar.firstChild.style.width = `${(fraction * 100).toFixed(1)}%`;
    const row = el(
      "tr",
      { class: "job-row", "data-job-id": job.id, "data-status": job.status },
      el("td", { class: "id", title: job.id }, job.id),
      el("td", {}, el("span", { class: `state ${job.status}` }, job.status)),
      el("td", {}, bar, el("div", { class: "stage" }, `${Math.round(fraction * 100)}% ${stageOf(job)}`)),
      el("td", {}, timeText(job.updated_at)),
    );
    if (job.id === state.selected) row.classList.add("selected");
    row.addEventListener("click", () => {
      state.selected = job.id;
      render();
    });
    body.append(row);
  }
}

function renderDetail() {
  const section = document.getElementById("detail");
  const job = state.jobs.find((j) => j.id === state.selected);
  if (!job) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  document.getElementById("detail-id").textContent = job.id;
  document.getElementById("detail-state").textContent =
    `${job.status} · ${Math.round(fractionOf(job) * 100)}% ${stageOf(job)}`;
  const errorBox = document.getElementById("detail-error");
  errorBox.hidden = !job.error;
  errorBox.textContent = job.error ? JSON.stringify(job.error, null, 2) : "";

  const meshes = job.status === "COMPLETED" && job.output && job.output.meshes ? job.output.meshes : {};
  const links = document.getElementById("downloads");
  links.replaceChildren();
  for (const [fmt, info] of Object.entries(meshes).sort()) {
    const url = info && safeUrl(info.url);
    if (!url) continue;
    const size = typeof info.bytes === "number" ? ` (${info.bytes.toLocaleString()} bytes)` : "";
    links.append(el("li", {}, el("a", { href: url, download: `model.${fmt}`, class: "download" }, fmt.toUpperCase()), size));
  }
  const glb = meshes.glb && safeUrl(meshes.glb.url);
  const box = document.getElementById("viewer-box");
  if (glb !== state.shownModel) {
    box.replaceChildren();
    if (glb) {
      // No auto-rotate: it turns the camera about the vertical, which spins a flat piece's
      // picture in its own plane instead of showing its front.
      const viewer = el("model-viewer", {
        src: glb,
        alt: `3D preview of job ${job.id}`,
        "camera-controls": "",
        "shadow-intensity": "1",
        exposure: "1",
      });
      viewer.addEventListener("load", () => frameFront(viewer));
      box.append(viewer);
    }
    state.shownModel = glb;
  }
}

// The GLB is Y up with the part's front facing +Z (BUILD_TO_GLTF in orfeas/mesh/export.py).
// A flat piece (an extruded logo, a relief) lies on the build plate, its picture facing up
// (+Y): from model-viewer's default orbit, 75° down from straight above, it is seen nearly
// edge-on. So a piece whose height is under FLAT_RATIO of its smaller plan side is seen from
// 30° off straight above, from the front: the picture faces the camera, upright, and its
// thickness still shows. Anything taller keeps the default front view.
const FLAT_ORBIT = "0deg 30deg auto";
const FRONT_ORBIT = "0deg 75deg auto";
const FLAT_RATIO = 0.5;

function frameFront(viewer) {
  const size = viewer.getDimensions();
  const flat = size.y < FLAT_RATIO * Math.min(size.x, size.z);
  viewer.setAttribute("camera-orbit", flat ? FLAT_ORBIT : FRONT_ORBIT);
  viewer.jumpCameraToGoal();
}

function render() {
  renderRows();
  renderDetail();
}

// The job API needs a key (Authorization: Bearer). It is kept in this browser's localStorage,
// given once through the form or as /#key=<key> (a fragment never reaches the server or its
// logs; it is removed from the address bar at once).
const KEY_STORAGE = "orfeas.apiKey";

function takeKeyFromFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const key = params.get("key");
  if (key) {
    localStorage.setItem(KEY_STORAGE, key);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

class NeedsKey extends Error {}

function showKeyForm(message) {
  state.jobs = [];
  state.selected = null;
  render();
  const form = document.getElementById("key-form");
  form.hidden = false;
  document.getElementById("key-message").textContent = message;
}

function setUpKeyForm() {
  const form = document.getElementById("key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key-input");
    const key = input.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    input.value = "";
    form.hidden = true;
    wake();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    showKeyForm("Key forgotten.");
  });
}

async function getJson(url) {
  const key = apiKey();
  if (!key) throw new NeedsKey("give an API key to see jobs");
  const answer = await fetch(url, {
    headers: { Accept: "application/json", Authorization: `Bearer ${key}` },
    cache: "no-store",
  });
  if (answer.status === 401) throw new NeedsKey("the API key was refused; give another");
  if (!answer.ok) throw new Error(`${url}: HTTP ${answer.status}`);
  return answer.json();
}

async function refreshList() {
  const body = await getJson(`/v1/jobs?limit=${LIST_LIMIT}`);
  state.jobs = Array.isArray(body.jobs) ? body.jobs : [];
  if (!state.selected || !state.jobs.some((j) => j.id === state.selected)) {
    const completed = state.jobs.find((j) => j.status === "COMPLETED");
    state.selected = (completed || state.jobs[0] || {}).id || null;
  }
  render();
}

let wakeUp = null;
const sleep = (ms) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wakeUp = () => {
      clearTimeout(timer);
      resolve();
    };
  });

function wake() {
  if (wakeUp) wakeUp();
}

async function loop() {
  const status = document.getElementById("connection");
  for (;;) {
    try {
      await refreshList();
      status.textContent = `${state.jobs.length} job(s) · live`;
      const running = state.jobs.find((j) => !TERMINAL.has(j.status));
      if (running && WAIT_S > 0) {
        // Long-poll: answers as soon as the job changes, or after WAIT_S seconds.
        await getJson(`/v1/jobs/${encodeURIComponent(running.id)}?wait=${WAIT_S}`);
      } else if (running) {
        await sleep(POLL_MS);
      } else {
        await sleep(IDLE_MS);
      }
    } catch (error) {
      if (error instanceof NeedsKey) {
        status.textContent = "no API key";
        showKeyForm(error.message);
      } else {
        status.textContent = `reconnecting (${error.message})`;
      }
      await sleep(IDLE_MS);
    }
  }
}

takeKeyFromFragment();
setUpKeyForm();
loop();
