// clipfleet console: live overview and try-it progress. No framework: DOM built with
// textContent (never innerHTML), so nothing the server sends is parsed as markup.
"use strict";

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children || []) node.appendChild(child);
  return node;
}

function csrf() {
  const meta = document.querySelector('meta[name="csrf"]');
  return meta ? meta.content : "";
}

// A form posting to /steer: drain, pause, resume of one pool or one worker.
function steerForms(kind, name) {
  const cell = el("td", { class: "steer" });
  for (const action of ["drain", "pause", "resume"]) {
    const form = el("form", { method: "post", action: "/steer", class: "inline" }, [
      el("input", { type: "hidden", name: "csrf", value: csrf() }),
      el("input", { type: "hidden", name: kind, value: name }),
      el("input", { type: "hidden", name: "action", value: action }),
      el("button", { text: action, "data-action": action, "data-target": name }),
    ]);
    cell.appendChild(form);
  }
  return cell;
}

function fill(table, rows) {
  const body = document.querySelector(table + " tbody");
  body.replaceChildren(...rows);
}

function cells(values) {
  return values.map((v) => el("td", { text: v === null || v === undefined ? "-" : String(v) }));
}

function ago(ms) {
  return ms < 1000 ? ms + " ms ago" : (ms / 1000).toFixed(1) + " s ago";
}

function time(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// Bars per minute (succeeded stacked on failed), or lines (mean, max).
function plot(id, minutes, series, bars) {
  const svg = document.getElementById(id);
  const w = 600, h = 160, pad = 28;
  const top = Math.max(1, ...minutes.map((m) => series.reduce((s, f) => bars ? s + f.get(m) : Math.max(s, f.get(m)), 0)));
  const x = (i) => pad + (i * (w - pad - 4)) / minutes.length;
  const y = (v) => h - pad + 8 - (v / top) * (h - pad - 4);
  const nodes = [
    svgEl("line", { x1: pad, y1: h - pad + 8, x2: w, y2: h - pad + 8, class: "axis" }),
  ];
  const label = svgEl("text", { x: 2, y: 12, class: "label" });
  label.textContent = series[0].unit(top);
  nodes.push(label);
  const start = svgEl("text", { x: pad, y: h - 4, class: "label" });
  start.textContent = "-60 min";
  const end = svgEl("text", { x: w - 30, y: h - 4, class: "label" });
  end.textContent = "now";
  nodes.push(start, end);
  if (bars) {
    const bw = (w - pad - 4) / minutes.length - 1;
    minutes.forEach((m, i) => {
      let base = 0;
      for (const s of series) {
        const v = s.get(m);
        if (v > 0) {
          nodes.push(svgEl("rect", { x: x(i), y: y(base + v), width: bw, height: y(base) - y(base + v), class: s.cls }));
        }
        base += v;
      }
    });
  } else {
    for (const s of series) {
      const points = minutes.map((m, i) => x(i) + "," + y(s.get(m))).join(" ");
      nodes.push(svgEl("polyline", { points, class: s.cls }));
    }
  }
  svg.replaceChildren(...nodes);
}

async function refreshOverview() {
  let data;
  try {
    const response = await fetch("/api/overview", { credentials: "same-origin" });
    if (response.status === 401) { window.location = "/login"; return; }
    data = await response.json();
  } catch (err) {
    document.getElementById("live-error").textContent = "no answer: " + err;
    return;
  }
  document.getElementById("live-error").textContent = (data.errors || []).join("; ");
  fill("#pools", data.pools.map((p) => {
    const row = el("tr", { "data-pool": p.pool }, cells([p.pool, p.model, p.ready, p.in_flight, p.delayed, p.consumers, p.dead]));
    row.appendChild(steerForms("pool", p.pool));
    return row;
  }));
  const note = document.getElementById("workers-note");
  if (!data.control_bus) {
    note.textContent = "This broker has no control bus (SQS): workers are not heard; drain them by scaling down.";
    fill("#workers", []);
  } else {
    note.textContent = data.workers.length ? "" : "No worker heard yet.";
    fill("#workers", data.workers.map((w) => {
      const state = w.draining ? "draining" : w.age_ms > 30000 ? "silent" : "serving";
      const row = el("tr", { "data-worker": w.worker, "data-state": state },
        cells([w.worker, w.pool, w.device, w.model, w.busy + "/" + w.slots, state, ago(w.age_ms)]));
      row.appendChild(steerForms("worker", w.worker));
      return row;
    }));
  }
  fill("#recent", data.recent.map((j) => {
    const link = el("td", {}, [el("a", { href: "/jobs/" + j.job_id, text: j.job_id })]);
    const row = el("tr", { "data-job": j.job_id, "data-status": j.status },
      [link, ...cells([j.account, j.pool, j.status, j.progress_pct === null ? "-" : j.progress_pct + " %", time(j.submitted_at_ms)])]);
    return row;
  }));
  const perMin = (v) => v + " jobs/min";
  plot("throughput", data.minutes, [
    { get: (m) => m.succeeded, cls: "ok", unit: perMin },
    { get: (m) => m.failed, cls: "error", unit: perMin },
  ], true);
  const secs = (v) => (v / 1000).toFixed(1) + " s";
  plot("latency", data.minutes, [
    { get: (m) => m.max_ms, cls: "max", unit: secs },
    { get: (m) => m.mean_ms, cls: "mean", unit: secs },
  ], false);
  document.getElementById("updated").textContent = time(data.now_ms) + " UTC";
}

async function refreshTry(section) {
  const job = section.dataset.job;
  let data;
  try {
    const response = await fetch("/try/" + job + "/status", { credentials: "same-origin" });
    data = await response.json();
    if (!response.ok) {
      document.getElementById("try-error").textContent = data.message || data.error;
      return false;
    }
  } catch (err) {
    document.getElementById("try-error").textContent = "no answer: " + err;
    return false;
  }
  document.getElementById("try-status").textContent = data.status;
  const progress = document.getElementById("try-progress");
  progress.value = data.status === "succeeded" ? 100 : data.progress_pct || 0;
  if (data.error) {
    document.getElementById("try-error").textContent = data.error.code + ": " + data.error.message;
  }
  const video = document.getElementById("try-video");
  if (data.video && video.hidden) {
    video.src = data.video;
    video.hidden = false;
    video.play().catch(() => {});
  }
  const proof = document.getElementById("try-proof");
  if (data.input_deleted_at_ms) {
    const after = data.finished_at_ms ? data.input_deleted_at_ms - data.finished_at_ms : null;
    proof.textContent = "deleted" + (after === null ? "" : " " + after + " ms after the video was stored") +
      "; the store itself: " + (data.photo_in_store === false ? "not found (gone)" : data.photo_in_store ? "STILL THERE" : "not checked");
    proof.dataset.gone = String(data.photo_in_store === false);
  } else if (["failed", "expired", "cancelled"].includes(data.status)) {
    proof.textContent = "the job ended " + data.status + "; its photo is deleted as it ends";
  }
  const ended = ["succeeded", "failed", "expired", "cancelled"].includes(data.status);
  return ended && (data.input_deleted_at_ms || data.status !== "succeeded");
}

function start() {
  if (document.getElementById("pools")) {
    refreshOverview();
    setInterval(refreshOverview, 2000);
  }
  const section = document.getElementById("try-job");
  if (section) {
    const tick = async () => {
      if (!(await refreshTry(section))) setTimeout(tick, 500);
    };
    tick();
  }
}

document.addEventListener("DOMContentLoaded", start);
