// The Airlock web page: sign in with an API key, generate, follow the job, show results and history.
// No framework and no build step. Every piece of text goes in with textContent (prompts are user
// text), never as HTML. The key lives in sessionStorage only and travels in the X-API-KEY header.

const KEY = "airlock.apiKey";
const POLL_MS = 500;
const MAX_LORAS = 5; // FooocusRequest.loras
const MAX_RETRY_S = 10;
const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// session: bumped on sign-out, so loops started before it stop touching the page.
const state = { session: 0, job: null, blobs: [], options: null, permissions: [] };

class ApiError extends Error {
  constructor(status, code, detail, retryAfter) {
    super(detail);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function el(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

// ------------------------------------------------------------------ API

async function api(path, { method = "GET", body, key = sessionStorage.getItem(KEY), as = "json" } = {}) {
  const headers = key ? { "X-API-KEY": key } : {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  for (;;) {
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
      redirect: "error",
    });
    if (response.ok) return as === "blob" ? response.blob() : response.json();
    const data = await response.json().catch(() => ({}));
    const error = new ApiError(
      response.status,
      data.code || "http_error",
      data.detail || `HTTP ${response.status}`,
      Number(response.headers.get("Retry-After")) || 1,
    );
    // A key's rate limit: reads wait it out (polling would otherwise fail on a busy key).
    if (error.code === "rate_limited" && method === "GET") {
      await sleep(Math.min(error.retryAfter, MAX_RETRY_S) * 1000);
      continue;
    }
    throw error;
  }
}

const can = (permission) => state.permissions.includes(permission) || state.permissions.includes("admin");

// ------------------------------------------------------------------ messages

function show(selector, text) {
  const node = $(selector);
  if (!node) return;
  node.textContent = text;
  node.hidden = !text;
}

const showError = (text) => show("#error", text);

function showPolicyNotice(text, rules) {
  show("#policy-notice", text);
  const notice = $("#policy-notice");
  if (notice) notice.dataset.rules = rules.join(",");
}

function clearMessages() {
  showError("");
  showPolicyNotice("", []);
}

function setProgress(text, percent = null) {
  show("#progress", text);
  const bar = $("#progress-bar");
  if (!bar) return;
  bar.hidden = percent === null;
  bar.value = percent ?? 0;
}

// Anything an API call can throw, said to the user; a key no longer accepted signs out.
function report(error) {
  if (!(error instanceof ApiError)) {
    showError(`Unexpected problem: ${error.message}`);
  } else if (error.status === 401) {
    signOut(`Your API key is no longer accepted: ${error.message}`);
  } else if (error.code === "prompt_blocked") {
    // The detail names the rule (and what it detects), never the text that matched.
    const rule = (error.message.match(/rule '([^']+)'/) || [])[1] || "unknown";
    showPolicyNotice(`Not generated: ${error.message}.`, [rule]);
  } else if (error.code === "QUEUE_IS_FULL") {
    showError("The queue is full right now; try again in a few seconds.");
  } else if (error.status === 403) {
    showError(`Not allowed for this key: ${error.message}. Ask your administrator for the permission.`);
  } else {
    showError(error.message);
  }
}

// ------------------------------------------------------------------ sign-in

function showSigninError(text) {
  show("#signin-error", text);
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#api-key");
  const key = input.value.trim();
  showSigninError("");
  if (!key) {
    showSigninError("Enter your API key.");
    return;
  }
  $("#signin-submit").disabled = true;
  try {
    const me = await api("/v1/me", { key });
    sessionStorage.setItem(KEY, key);
    input.value = "";
    startApp(me);
  } catch (error) {
    showSigninError(
      error.status === 401
        ? `This API key was not accepted (${error.message}). Check it and try again.`
        : `Signing in failed: ${error.message}`,
    );
    input.focus();
  } finally {
    $("#signin-submit").disabled = false;
  }
}

function signOut(message = "") {
  state.session += 1;
  state.job = null;
  sessionStorage.clear();
  state.blobs.forEach((url) => URL.revokeObjectURL(url));
  state.blobs = [];
  $("#app")?.remove();
  $("#signin").hidden = false;
  showSigninError(message);
  $("#api-key").focus();
}

// ------------------------------------------------------------------ the signed-in page

function startApp(me) {
  state.permissions = me.permissions;
  $("#signin").hidden = true;
  $("#main").append($("#app-template").content.firstElementChild.cloneNode(true));
  $("#whoami").textContent = `Tenant ${me.tenant} · key ${me.key_id}`;

  $("#signout").addEventListener("click", () => signOut());
  $("#generate-form").addEventListener("submit", generate);
  $("#cancel").addEventListener("click", cancel);
  $("#style-search").addEventListener("input", filterStyles);
  $("#style-list").addEventListener("change", filterStyles);
  $("#seed-random").addEventListener("change", syncSeed);
  $("#performance").addEventListener("change", syncGuidance);
  $("#history-refresh").addEventListener("click", refreshHistory);
  $("#history").addEventListener("click", historyAction);
  for (const id of ["#prompt", "#negative-prompt"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        $("#generate-form").requestSubmit();
      }
    });
  }
  if (!can("generate")) {
    $("#generate").disabled = true;
    showError("This key cannot generate images (it lacks the generate permission).");
  }
  loadChoices();
  if (can("jobs:read")) refreshHistory();
  $("#prompt").focus();
}

async function loadChoices() {
  if (!can("models:read")) {
    showError("This key cannot list presets, styles or LoRAs (it lacks the models:read permission).");
    return;
  }
  const session = state.session;
  try {
    const [options, styles, models] = await Promise.all([
      api("/v1/engines/options"),
      api("/v1/engines/styles"),
      api("/v1/engines/all-models"),
    ]);
    if (session !== state.session) return;
    fillOptions(options);
    fillStyles(styles);
    fillLoras(models.lora_filenames);
  } catch (error) {
    if (session === state.session) report(error);
  }
}

function fillOptions(options) {
  state.options = options;
  const performance = $("#performance");
  for (const preset of options.performances) {
    const selected = preset.name === options.default_performance;
    performance.append(new Option(`${preset.name} (${preset.steps} steps)`, preset.name, selected, selected));
  }
  const aspect = $("#aspect-ratio");
  for (const ratio of options.aspect_ratios) {
    const selected = ratio === options.default_aspect_ratio;
    aspect.append(new Option(ratio.replace("*", " × "), ratio, selected, selected));
  }
  $("#image-number").max = String(options.max_image_number);
  $("#prompt").maxLength = options.max_prompt_chars;
  $("#negative-prompt").maxLength = options.max_prompt_chars;
  for (const name of options.samplers) $("#sampler").append(new Option(name, name));
  for (const name of options.schedulers) $("#scheduler").append(new Option(name, name));
  syncGuidance();
}

function fillStyles(names) {
  const list = $("#style-list");
  list.replaceChildren();
  names.forEach((name, index) => {
    const row = el("div", { class: "check-row" });
    row.append(
      el("input", { type: "checkbox", id: `style-${index}`, name: "style", value: name }),
      el("label", { for: `style-${index}` }, name),
    );
    list.append(row);
  });
  filterStyles();
}

// Rows that do not match are hidden; checked ones stay visible, so the selection is always in view.
function filterStyles() {
  const query = $("#style-search").value.trim().toLowerCase();
  let shown = 0;
  for (const row of $$("#style-list .check-row")) {
    const box = $("input", row);
    row.hidden = !(box.checked || box.value.toLowerCase().includes(query));
    shown += row.hidden ? 0 : 1;
  }
  $("#style-empty").hidden = shown > 0;
}

function fillLoras(names) {
  const list = $("#lora-list");
  list.replaceChildren();
  if (!names.length) {
    list.append(el("p", { class: "hint" }, "No LoRAs are available to your tenant."));
    return;
  }
  names.forEach((name, index) => {
    const row = el("div", { class: "lora-row" });
    const weightLabel = el("label", { for: `lora-weight-${index}` });
    weightLabel.append(el("span", { class: "visually-hidden" }, `${name} `), "weight");
    row.append(
      el("input", { type: "checkbox", id: `lora-${index}`, name: "lora", value: name }),
      el("label", { for: `lora-${index}`, class: "lora-name" }, name),
      weightLabel,
      el("input", {
        type: "number",
        id: `lora-weight-${index}`,
        name: "lora-weight",
        "data-lora": name,
        min: "-2",
        max: "2",
        step: "0.05",
        value: "1",
      }),
    );
    list.append(row);
  });
}

function syncSeed() {
  const random = $("#seed-random").checked;
  $("#seed").disabled = random;
  $("#seed").required = !random;
  if (!random) $("#seed").focus();
}

// Presets that fix the guidance scale (Lightning and the like) say so next to the field.
function syncGuidance() {
  const preset = state.options?.performances.find((p) => p.name === $("#performance").value);
  const fixed = preset && preset.guidance_scale !== null;
  $("#guidance-hint").textContent = fixed
    ? `The ${preset.name} preset uses a guidance scale of ${preset.guidance_scale}; this value is ignored.`
    : "Used by this preset.";
}

// ------------------------------------------------------------------ generating

function formBody() {
  const loras = $$('#lora-list input[name="lora"]:checked').map((box) => ({
    model_name: box.value,
    weight: Number($('input[name="lora-weight"]', box.closest(".lora-row")).value),
  }));
  if (loras.length > MAX_LORAS) throw new Error(`Choose at most ${MAX_LORAS} LoRAs.`);
  let seed = -1;
  if (!$("#seed-random").checked) {
    seed = Number($("#seed").value);
    // Above 2^53 a JavaScript number loses digits: the page keeps to seeds it can send exactly.
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error("The seed must be a whole number from 0.");
  }
  const advanced = {};
  if ($("#sampler").value) advanced.sampler_name = $("#sampler").value;
  if ($("#scheduler").value) advanced.scheduler_name = $("#scheduler").value;
  return {
    prompt: $("#prompt").value,
    negative_prompt: $("#negative-prompt").value,
    style_selections: $$('#style-list input[name="style"]:checked').map((box) => box.value),
    performance_selection: $("#performance").value,
    aspect_ratios_selection: $("#aspect-ratio").value,
    image_number: Number($("#image-number").value),
    image_seed: seed,
    guidance_scale: Number($("#guidance-scale").value),
    loras,
    advanced_params: advanced,
    async_process: true,
  };
}

function setBusy(busy) {
  $("#generate").disabled = busy || !can("generate");
  $("#cancel").disabled = !busy;
  $("#gallery").setAttribute("aria-busy", String(busy));
}

async function generate(event) {
  event.preventDefault();
  if (state.job) return;
  clearMessages();
  let body;
  try {
    body = formBody();
  } catch (error) {
    showError(error.message);
    return;
  }
  const session = state.session;
  setBusy(true);
  setProgress("Submitting…");
  try {
    const job = await api("/v1/generation/text-to-image", { method: "POST", body });
    await follow(job.job_id, session);
  } catch (error) {
    if (session === state.session) {
      setProgress("");
      report(error);
    }
  } finally {
    state.job = null;
    if (session === state.session) setBusy(false);
  }
}

function describe(job) {
  const name = `Job ${job.job_id.slice(0, 8)}`;
  switch (job.job_stage) {
    case "WAITING":
      return `${name}: waiting, queue position ${job.job_queue_position}`;
    case "RUNNING":
      return `${name}: running, step ${job.job_step}/${job.job_steps} (${job.job_progress}%)`;
    case "SUCCESS":
      return `${name}: finished.`;
    default:
      return `${name}: ${job.job_status || "failed"}.`;
  }
}

async function follow(jobId, session) {
  state.job = jobId;
  let job;
  for (;;) {
    job = await api(`/v1/generation/query-job?job_id=${encodeURIComponent(jobId)}`);
    if (session !== state.session) return;
    setProgress(describe(job), job.job_stage === "RUNNING" ? job.job_progress : null);
    if (job.job_stage === "SUCCESS" || job.job_stage === "ERROR") break;
    await sleep(POLL_MS);
  }
  state.job = null;
  showRedactions(job);
  if (job.job_stage === "ERROR" && job.job_status !== "cancelled by the client") {
    showError(`The job did not finish: ${job.job_status || "unknown error"}`);
  }
  if (job.job_stage === "SUCCESS") await showResults(job, session);
  if (can("jobs:read")) refreshHistory();
}

async function cancel() {
  if (!state.job) return;
  try {
    const stopped = await api(`/v1/generation/stop?job_id=${encodeURIComponent(state.job)}`, { method: "POST" });
    if (stopped.job_stage === "RUNNING") {
      showError("This job is already running and cannot be stopped; it will finish.");
    }
  } catch (error) {
    report(error);
  }
}

// Redacted parts are named by rule only; the record (and this page) never shows what matched.
function showRedactions(job) {
  const findings = job.job_prompt_policy?.findings || [];
  const rules = [...new Set(findings.filter((f) => f.action === "redact").map((f) => f.rule))];
  if (rules.length) {
    showPolicyNotice(`Parts of your prompt were redacted in the record (${rules.join(", ")}).`, rules);
  }
}

// ------------------------------------------------------------------ results

async function showResults(job, session) {
  const figures = await Promise.all(job.job_result.map((result, index) => resultFigure(job, result, index)));
  if (session !== state.session) return;
  $("#gallery").prepend(...figures);
}

async function resultFigure(job, result, index) {
  // Same origin whatever host name the link carries: only its path is fetched.
  const path = new URL(result.url, window.location.href).pathname;
  const [blob, provenance] = await Promise.all([api(path, { as: "blob" }), api(`${path}/provenance`)]);
  const url = URL.createObjectURL(blob); // the exact bytes served: the signed metadata stays intact
  state.blobs.push(url);
  const record = provenance.record || {};
  const params = record.parameters || {};
  const figure = el("figure", { class: "result", "data-job-id": job.job_id });
  figure.append(
    el("img", { src: url, alt: `Image ${index + 1} of job ${job.job_id}: ${params.prompt || "no prompt"}` }),
  );
  const caption = el("figcaption");
  const extension = EXTENSIONS[blob.type] || "png";
  const download = el("a", { class: "download", href: url, download: `airlock-${job.job_id}-${index}.${extension}` });
  download.append(el("img", { class: "icon", src: "download.svg", alt: "", width: "16", height: "16" }), "Download");
  caption.append(download);
  figure.append(caption, provenanceList(job, result, record, params, provenance.signature || {}));
  return figure;
}

function provenanceList(job, result, record, params, signature) {
  const model = (m) => (m ? `${m.name} ${m.version}` : "none");
  const redacted = (job.job_prompt_policy?.findings || []).filter((f) => f.action === "redact");
  const rows = [
    ["Model", model(record.model)],
    ["Refiner", model(record.refiner)],
    ["LoRAs", (record.loras || []).map((l) => `${l.name} ${l.version} (${l.weight})`).join(", ") || "none"],
    ["Seed", result.seed], // the string from the job: a JSON number above 2^53 would lose digits here
    ["Steps", params.steps],
    ["Performance", params.performance],
    ["Sampler", `${params.sampler} / ${params.scheduler}`],
    ["Guidance scale", params.guidance_scale],
    ["Size", `${params.width} × ${params.height}`],
    ["Styles", (params.styles || []).join(", ") || "none"],
    ["Prompt (as recorded)", params.prompt],
    ["Negative prompt (as recorded)", params.negative_prompt || "none"],
    ["Prompt policy", redacted.length ? `redacted: ${[...new Set(redacted.map((f) => f.rule))].join(", ")}` : "no changes"],
    ["Created", record.created],
    ["Signed by", signature.key],
  ];
  const list = el("dl", { class: "provenance" });
  for (const [term, value] of rows) {
    list.append(el("dt", {}, term), el("dd", {}, String(value ?? "")));
  }
  return list;
}

// ------------------------------------------------------------------ history

async function refreshHistory() {
  const session = state.session;
  try {
    const data = await api("/v1/generation/job-history");
    if (session !== state.session) return;
    const jobs = [...data.queue.reverse(), ...data.history.reverse()]; // newest first
    const list = $("#history");
    list.replaceChildren(
      ...jobs.map((job) => {
        const item = el("li", { class: "history-item", "data-job-id": job.job_id });
        item.append(el("code", {}, job.job_id), el("span", { class: `stage stage-${job.job_stage.toLowerCase()}` }, job.job_stage));
        const rerun = el("button", { type: "button", class: "secondary rerun", "aria-label": `Re-run job ${job.job_id}` });
        rerun.append(el("img", { class: "icon", src: "rerun.svg", alt: "", width: "16", height: "16" }), "Re-run");
        item.append(rerun);
        if (job.job_stage === "SUCCESS") {
          item.append(el("button", { type: "button", class: "secondary show", "aria-label": `Show images of job ${job.job_id}` }, "Show"));
        }
        return item;
      }),
    );
    if (!jobs.length) list.append(el("li", { class: "hint" }, "No jobs yet."));
  } catch (error) {
    if (session === state.session) report(error);
  }
}

async function historyAction(event) {
  const button = event.target.closest("button");
  const item = button?.closest(".history-item");
  if (!item) return;
  const session = state.session;
  clearMessages();
  try {
    const job = await api(`/v1/generation/query-job?job_id=${encodeURIComponent(item.dataset.jobId)}`);
    if (session !== state.session) return;
    if (button.classList.contains("rerun")) {
      fillForm(job.job_request);
      setProgress(`Settings of job ${job.job_id.slice(0, 8)} are in the form; press Generate to run it again.`);
      $("#prompt").focus();
    } else if (job.job_stage === "SUCCESS") {
      showRedactions(job);
      await showResults(job, session);
    }
  } catch (error) {
    if (session === state.session) report(error);
  }
}

function setSelect(selector, value) {
  const select = $(selector);
  if ([...select.options].some((option) => option.value === value)) select.value = value;
}

// The job's own settings back into the form (the prompts as recorded: redacted parts stay redacted).
function fillForm(request) {
  $("#prompt").value = request.prompt || "";
  $("#negative-prompt").value = request.negative_prompt || "";
  for (const box of $$('#style-list input[name="style"]')) box.checked = request.style_selections.includes(box.value);
  filterStyles();
  setSelect("#performance", request.performance_selection);
  setSelect("#aspect-ratio", request.aspect_ratios_selection);
  $("#image-number").value = String(request.image_number);
  $("#seed-random").checked = request.image_seed < 0;
  $("#seed").value = request.image_seed < 0 ? "" : String(request.image_seed);
  $("#seed").disabled = request.image_seed < 0;
  const missing = [];
  for (const box of $$('#lora-list input[name="lora"]')) box.checked = false;
  for (const lora of request.loras) {
    const box = $$('#lora-list input[name="lora"]').find((b) => b.value === lora.model_name);
    if (!box) {
      missing.push(lora.model_name);
      continue;
    }
    box.checked = true;
    $('input[name="lora-weight"]', box.closest(".lora-row")).value = String(lora.weight);
  }
  $("#guidance-scale").value = String(request.guidance_scale);
  setSelect("#sampler", request.advanced_params.sampler_name || "");
  setSelect("#scheduler", request.advanced_params.scheduler_name || "");
  if (request.advanced_params.sampler_name || request.advanced_params.scheduler_name) $("#advanced").open = true;
  syncGuidance();
  if (missing.length) showError(`No longer available to you, so left out: ${missing.join(", ")}.`);
}

// ------------------------------------------------------------------ start

async function boot() {
  $("#signin-form").addEventListener("submit", signIn);
  const key = sessionStorage.getItem(KEY);
  if (!key) {
    $("#api-key").focus();
    return;
  }
  try {
    startApp(await api("/v1/me", { key })); // a reload in the same tab stays signed in
  } catch (error) {
    signOut(error.status === 401 ? "Your API key is no longer accepted; sign in again." : `Could not resume: ${error.message}`);
  }
}

boot();
