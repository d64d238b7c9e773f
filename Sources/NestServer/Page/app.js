// The page speaks the same HTTP API as any client: /sdapi/v1/txt2img with the
// "nested attention" script for subjects, /sdapi/v1/progress polled while a job runs.
"use strict";
const $ = (id) => document.getElementById(id);
const photos = [];  // {token, data (base64 without prefix), url}

async function getJSON(url) {
  const response = await fetch(url);
  return response.json();
}

async function setup() {
  const [models, samplers, subjects] = await Promise.all([
    getJSON("/sdapi/v1/sd-models"), getJSON("/sdapi/v1/samplers"), getJSON("/nest/subjects")]);
  $("model").textContent = "model: " + (models[0] ? models[0].title : "?");
  for (const s of samplers) $("sampler").add(new Option(s.name, s.name));
  for (const t of subjects.tokens) $("token").add(new Option(t, t));
  if (!subjects.tokens.length) $("subjects").disabled = true;
  refreshGallery();
}

function addFiles(files) {
  for (const file of files) {
    if (!/^image\/(png|jpeg)$/.test(file.type)) { showStatus(file.name + ": only PNG and JPEG photos", true); continue; }
    const reader = new FileReader();
    reader.onload = () => {
      const url = reader.result;
      photos.push({ token: $("token").value, data: url.slice(url.indexOf(",") + 1), url });
      drawPhotos();
    };
    reader.readAsDataURL(file);
  }
}

function drawPhotos() {
  const box = $("photos");
  box.replaceChildren();
  photos.forEach((p, i) => {
    const div = document.createElement("div");
    div.className = "photo";
    const img = new Image();
    img.src = p.url;
    const remove = document.createElement("button");
    remove.textContent = "×";
    remove.onclick = () => { photos.splice(i, 1); drawPhotos(); };
    div.append(img, p.token, remove);
    box.append(div);
  });
}

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function buildRequest() {
  const body = {
    prompt: $("prompt").value, negative_prompt: $("negative").value,
    steps: numberOrNull("steps"), cfg_scale: numberOrNull("cfg"), seed: numberOrNull("seed") ?? -1,
    sampler_name: $("sampler").value, batch_size: numberOrNull("batch") ?? 1, n_iter: 1,
  };
  if (numberOrNull("width") !== null) body.width = numberOrNull("width");
  if (numberOrNull("height") !== null) body.height = numberOrNull("height");
  if (photos.length) {
    const byToken = {};
    for (const p of photos) (byToken[p.token] = byToken[p.token] || []).push(p.data);
    const args = { subjects: Object.entries(byToken).map(([token, images]) => ({ token, images })),
                   attention_maps: $("maps").checked };
    if (numberOrNull("lambda") !== null) args.value_normalization = numberOrNull("lambda");
    body.alwayson_scripts = { "nested attention": { args: [args] } };
  }
  return body;
}

function showStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function pollProgress() {
  try {
    const p = await getJSON("/sdapi/v1/progress");
    if (p.state.job) {
      $("fill").style.width = (100 * p.progress).toFixed(1) + "%";
      showStatus(`step ${p.state.sampling_step}/${p.state.sampling_steps} · ETA ${p.eta_relative.toFixed(1)} s` +
                 (p.state.job_count > 1 ? ` · ${p.state.job_count - 1} waiting` : ""));
    }
  } catch (e) { /* the next poll tries again */ }
}

async function generate() {
  $("generate").disabled = true;
  $("interrupt").disabled = false;
  $("fill").style.width = "0%";
  showStatus("queued");
  const timer = setInterval(pollProgress, 250);
  try {
    const response = await fetch("/sdapi/v1/txt2img", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(buildRequest()) });
    const result = await response.json();
    if (!response.ok) { showStatus(result.error || ("error " + response.status), true); return; }
    const info = JSON.parse(result.info);
    $("images").replaceChildren(...result.images.map((b64) => {
      const img = new Image();
      img.src = "data:image/png;base64," + b64;
      img.alt = "generated image";
      return img;
    }));
    $("parameters").textContent = info.infotexts.join("\n\n");
    $("fill").style.width = "100%";
    showStatus(info.interrupted ? "interrupted" : `done: ${result.images.length} image(s), seed ${info.seed}`);
    refreshGallery();
  } catch (e) {
    showStatus("request failed: " + e, true);
  } finally {
    clearInterval(timer);
    $("generate").disabled = false;
    $("interrupt").disabled = true;
  }
}

async function refreshGallery() {
  const g = await getJSON("/nest/gallery");
  $("gallery").replaceChildren(...g.images.map((item) => {
    const img = new Image();
    img.src = item.url;
    img.title = item.parameters;
    img.onclick = () => { $("parameters").textContent = item.parameters; };
    return img;
  }));
}

async function showMaps() {
  const m = await getJSON("/nest/attention");
  if (!m.maps.length) { showStatus("no attention maps yet: generate with a subject and 'record attention maps'", true); return; }
  $("attention").replaceChildren(...m.maps.map((url) => {
    const figure = document.createElement("figure");
    const img = new Image();
    img.src = url;
    const caption = document.createElement("figcaption");
    caption.textContent = decodeURIComponent(url.split("/").pop()).replace(/\.png$/, "");
    figure.append(img, caption);
    return figure;
  }));
}

$("files").addEventListener("change", (e) => addFiles(e.target.files));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => { e.preventDefault(); $("drop").classList.remove("over"); addFiles(e.dataTransfer.files); });
$("generate").addEventListener("click", generate);
$("interrupt").addEventListener("click", () => fetch("/sdapi/v1/interrupt", { method: "POST" }));
$("show-maps").addEventListener("click", showMaps);
setup();
