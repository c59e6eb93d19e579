// The xorjobs dashboard: polls the API's JSON routes every second and redraws in place.
// Data goes into the page with textContent only (sweep names come from users); no inline script
// (the Content-Security-Policy forbids it), no third-party code, nothing fetched from another host.
"use strict";

(() => {
  // Defined once, in xorjobs/defaults.py; the page carries them as <body data-...> (api/routes/dashboard.py).
  const STATES = document.body.dataset.jobStates.split(" ");
  const TERMINAL = document.body.dataset.terminalStates.split(" ");
  const SWEEP_ID_PREFIX = document.body.dataset.sweepIdPrefix;
  const POLL_MS = 1000;
  const PLOT_REFRESH_MS = 3000;
  const DETAILS_REFRESH_MS = 2000;
  const MAX_JOB_ROWS = 500;
  const THRESHOLD = 0.05;
  const WORKERS_REFRESH_MS = 3000;

  const $ = (selector) => document.querySelector(selector);

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  // The default cache mode: for the routes that answer with an ETag (a sweep's summary and plot) the
  // browser asks with If-None-Match by itself, and a 304 gives back the body it kept.
  async function getResponse(path, signal, accept) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: accept }, signal });
    if (response.status === 401) {
      const here = location.pathname + location.search + location.hash;
      location.assign("/login?next=" + encodeURIComponent(here));
      throw new Error("not logged in");
    }
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response;
  }

  async function getJson(path, signal) {
    return (await getResponse(path, signal, "application/json")).json();
  }

  function number(value, digits = 4) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "string") return value; // "nan", "inf", "-inf"
    if (Number.isInteger(value)) return String(value);
    return Number(value.toPrecision(digits)).toString();
  }

  function percent(value) {
    return value === null || value === undefined ? "–" : (100 * value).toFixed(0) + "%";
  }

  const total = (counts) => STATES.reduce((sum, state) => sum + (counts[state] || 0), 0);
  const finished = (counts) => TERMINAL.reduce((sum, state) => sum + (counts[state] || 0), 0);

  function countsNode(counts, withIds) {
    const node = element("span", null, "counts-line");
    for (const state of STATES) {
      const count = counts[state] || 0;
      if (!count && !withIds) continue;
      const part = element("span", null, "state " + state);
      part.append(state + " ");
      const value = element("b", count);
      if (withIds) value.id = "count-" + state;
      part.append(value);
      node.append(part);
    }
    if (!node.childNodes.length) node.append("no jobs");
    return node;
  }

  function barNode(counts) {
    const bar = element("div", null, "bar");
    const all = total(counts) || 1;
    for (const state of STATES) {
      if (!counts[state]) continue;
      const part = element("span", null, "bar-part " + state);
      part.style.width = (100 * counts[state]) / all + "%";
      part.title = state + " " + counts[state];
      bar.append(part);
    }
    return bar;
  }

  function setLive(ok) {
    const live = $("#live");
    if (live) live.className = "live " + (ok ? "ok" : "error");
  }

  // --- the dashboard page ---------------------------------------------------------------------

  const view = {
    selected: null,
    detailsSignature: null, detailsAt: 0, detailsInFlight: null,
    plotSignature: null, plotAt: 0, plotInFlight: null, plotEtag: null, plotUrl: null,
  };

  function setLoading(id, loading) {
    const note = $("#" + id);
    if (note) note.hidden = !loading;
  }

  // Another sweep or grouping chosen: what is in flight is for the old choice, so it is dropped (the
  // plot followed the "Results by" choice only after the old picture had arrived), and the table and
  // plot say they are loading until the new answers are drawn.
  function forgetShown() {
    for (const inFlight of [view.detailsInFlight, view.plotInFlight]) if (inFlight) inFlight.abort();
    view.detailsInFlight = view.plotInFlight = null;
    view.detailsSignature = null;
    view.plotSignature = null;
    setLoading("summary-loading", true);
    setLoading("plot-loading", true);
  }

  function selectedFromHash() {
    const id = decodeURIComponent(location.hash.slice(1));
    return id.startsWith(SWEEP_ID_PREFIX) ? id : null;
  }

  function renderSweeps(sweeps) {
    const body = $("#sweeps tbody");
    body.replaceChildren();
    $("#no-sweeps").hidden = sweeps.length > 0;
    for (const sweep of sweeps) {
      const row = element("tr");
      row.dataset.sweepId = sweep.sweep_id;
      if (sweep.sweep_id === view.selected) row.className = "selected";
      const link = element("a", sweep.sweep_id);
      link.href = "#" + sweep.sweep_id;
      const idCell = element("td");
      idCell.append(link);
      const countsCell = element("td");
      countsCell.append(countsNode(sweep.counts, false));
      const barCell = element("td");
      barCell.append(barNode(sweep.counts));
      row.append(
        idCell,
        element("td", sweep.name || "–"),
        element("td", (sweep.created_at || "").slice(0, 19).replace("T", " ")),
        element("td", sweep.size, "number"),
        countsCell,
        barCell,
      );
      row.addEventListener("click", () => {
        location.hash = sweep.sweep_id;
      });
      body.append(row);
    }
  }

  function summaryHeader(by, threshold, stopping) {
    const names = [...by, "jobs", "succeeded", "failed", "solve rate [95% CI]", "final cost mean ± std",
      "final cost median", "median steps to cost < " + number(threshold) + " (converged)", "diverged"];
    // Early stopping's columns, for sweeps where a job stopped early.
    if (stopping) names.push("stopped (median step)", "median steps trained");
    const row = element("tr");
    for (const name of names) row.append(element("th", name));
    return row;
  }

  function renderSummary(summary) {
    $("#threshold").textContent = number(summary.threshold);
    const stopping = summary.groups.some((group) => group.stopped > 0);
    $("#summary thead").replaceChildren(summaryHeader(summary.by, summary.threshold, stopping));
    const body = $("#summary tbody");
    body.replaceChildren();
    for (const group of summary.groups) {
      const row = element("tr");
      for (const name of summary.by) row.append(element("td", group[name]));
      const interval = group.solve_rate_ci
        ? " [" + percent(group.solve_rate_ci[0]) + ", " + percent(group.solve_rate_ci[1]) + "]"
        : "";
      const spread = group.final_cost_std === null ? "" : " ± " + number(group.final_cost_std, 2);
      row.append(
        element("td", group.jobs, "number"),
        element("td", group.succeeded, "number"),
        element("td", group.failed, "number"),
        element("td", percent(group.solve_rate) + interval, "number"),
        element("td", number(group.final_cost_mean) + spread, "number"),
        element("td", number(group.final_cost_median), "number"),
        element("td", number(group.steps_to_converge_median) + " (" + group.converged + ")", "number"),
        element("td", group.diverged, "number"),
      );
      if (stopping) {
        row.append(
          element("td", group.stopped + " (" + number(group.stopped_at_median) + ")", "number"),
          element("td", number(group.steps_trained_median), "number"),
        );
      }
      body.append(row);
    }
  }

  function renderJobs(jobs, size) {
    const body = $("#jobs tbody");
    body.replaceChildren();
    for (const job of jobs.slice(0, MAX_JOB_ROWS)) {
      const link = element("a", job.id);
      link.href = "/ui/jobs/" + encodeURIComponent(job.id);
      const idCell = element("td");
      idCell.append(link);
      const row = element("tr");
      row.append(
        idCell,
        element("td", job.variant),
        element("td", job.seed, "number"),
        element("td", number(job.lr), "number"),
        element("td", job.state, "state " + job.state),
        element("td", number(job.final_cost), "number"),
        element("td", number(job.accuracy), "number"),
        element("td", number(job.steps_trained), "number"),
      );
      body.append(row);
    }
    if (size > MAX_JOB_ROWS) {
      const row = element("tr");
      const cell = element("td", "… and " + (size - MAX_JOB_ROWS) + " more (see xorjobs results)");
      cell.colSpan = 8;
      row.append(cell);
      body.append(row);
    }
  }

  // The counts redraw every second. The table and the plot cost the API more (a 10,000-job sweep has
  // a million costs to read), so each has at most one request in flight, is asked for again only when
  // the counts changed (or, for the plot, every few seconds while jobs run: curves grow between
  // state changes), and never more often than DETAILS_REFRESH_MS / PLOT_REFRESH_MS while running.

  // The plot is fetched (not an <img> URL with a cache buster), so an unchanged sweep costs a 304 and
  // the kept picture is not decoded again; it is shown through an object URL (the CSP's img-src blob:).
  async function refreshPlot(sweepId, signature) {
    const by = $("#by").value;
    const inFlight = new AbortController();
    view.plotInFlight = inFlight;
    view.plotSignature = signature;
    view.plotAt = Date.now();
    try {
      const path = "/sweeps/" + encodeURIComponent(sweepId) + "/plot.png?by=" + encodeURIComponent(by)
        + "&threshold=" + THRESHOLD;
      const response = await getResponse(path, inFlight.signal, "image/png");
      const etag = response.headers.get("ETag");
      const plot = $("#plot");
      if (etag === null || etag !== view.plotEtag || plot.dataset.by !== by) {
        const url = URL.createObjectURL(await response.blob());
        await new Promise((resolve) => {
          plot.onload = plot.onerror = resolve;
          plot.src = url;
        });
        if (view.plotUrl) URL.revokeObjectURL(view.plotUrl);
        view.plotUrl = url;
        view.plotEtag = etag;
      }
      plot.dataset.by = by; // what the shown picture is grouped by (the tests read it)
      setLoading("plot-loading", false);
    } catch (error) {
      if (error.name !== "AbortError") console.warn(error);
    } finally {
      if (view.plotInFlight === inFlight) view.plotInFlight = null;
    }
  }

  async function refreshDetails(sweepId, signature) {
    const inFlight = new AbortController();
    view.detailsInFlight = inFlight;
    view.detailsAt = Date.now();
    try {
      const by = $("#by").value;
      const query = "?by=" + encodeURIComponent(by) + "&threshold=" + THRESHOLD;
      const base = "/sweeps/" + encodeURIComponent(sweepId);
      // Only the rows the table shows: a 10,000-job sweep's whole job list is 6.6 MB (1.2 s), 500 rows 0.4 MB.
      const [summary, status] = await Promise.all([
        getJson(base + "/summary" + query, inFlight.signal),
        getJson(base + "?limit=" + MAX_JOB_ROWS, inFlight.signal),
      ]);
      if (sweepId !== view.selected || inFlight.signal.aborted) return;
      renderSummary(summary);
      renderJobs(status.jobs, status.size);
      view.detailsSignature = signature; // only once the details for it are shown
      setLoading("summary-loading", false);
    } catch (error) {
      if (error.name !== "AbortError") console.warn(error);
    } finally {
      if (view.detailsInFlight === inFlight) view.detailsInFlight = null;
    }
  }

  // Each asks the API to read about one cost row per logged step of every job: a large running sweep
  // is asked less often (every 10 s at 10,000 jobs), besides the 304s while it does not change.
  const spacing = (base, size) => Math.max(base, size);

  function showSweep(sweep) {
    $("#sweep").hidden = false;
    $("#sweep-id").textContent = sweep.sweep_id;
    $("#sweep-name").textContent = sweep.name ? "(" + sweep.name + ")" : "";
    $("#sweep-counts").replaceChildren(countsNode(sweep.counts, true));
    $("#sweep-bar").replaceChildren(barNode(sweep.counts));
    const done = finished(sweep.counts) >= total(sweep.counts);
    $("#sweep").dataset.done = String(done);
    const signature = sweep.sweep_id + JSON.stringify(sweep.counts) + $("#by").value;
    const now = Date.now();
    const fresh = view.detailsSignature === null || !view.detailsSignature.startsWith(sweep.sweep_id);
    if (!view.detailsInFlight && signature !== view.detailsSignature
        && (done || fresh || now - view.detailsAt >= spacing(DETAILS_REFRESH_MS, sweep.size))) {
      refreshDetails(sweep.sweep_id, signature); // not awaited: the counts keep updating meanwhile
    }
    const plotFresh = view.plotSignature === null || !view.plotSignature.startsWith(sweep.sweep_id);
    if (!view.plotInFlight && (plotFresh || signature !== view.plotSignature || !done)
        && (done || plotFresh || now - view.plotAt >= spacing(PLOT_REFRESH_MS, sweep.size))) {
      refreshPlot(sweep.sweep_id, signature);
    }
  }

  // --- the workers panel (GET /workers: live and lost ones), every WORKERS_REFRESH_MS ------------

  const workersView = { at: 0, inFlight: false };

  function engines(byVariant) {
    const names = [...new Set(Object.values(byVariant))];
    if (names.length === 1) return names[0];
    return Object.entries(byVariant).map(([variant, engine]) => variant + " " + engine).join(", ");
  }

  function training(current) {
    if (!current.length) return "idle";
    return current.map((pack) => pack.leader + (pack.size > 1 ? " (+" + (pack.size - 1) + ")" : "")).join(", ");
  }

  function renderWorkers(workers) {
    const body = $("#workers tbody");
    body.replaceChildren();
    $("#no-workers").hidden = workers.some((worker) => worker.state === "live");
    for (const worker of workers) {
      const row = element("tr");
      row.dataset.instanceId = worker.instance_id;
      row.append(
        element("td", worker.node),
        element("td", worker.host),
        element("td", worker.state, "worker-state " + worker.state),
        element("td", worker.queues.join(", ")),
        element("td", engines(worker.engines)),
        element("td", Math.round(worker.seconds_since_heartbeat) + " s ago", "number"),
        element("td", training(worker.current)),
      );
      body.append(row);
    }
  }

  async function refreshWorkers() {
    if (workersView.inFlight || Date.now() - workersView.at < WORKERS_REFRESH_MS) return;
    workersView.inFlight = true;
    workersView.at = Date.now();
    try {
      renderWorkers((await getJson("/workers")).workers);
    } catch (error) {
      console.warn(error);
    } finally {
      workersView.inFlight = false;
    }
  }

  async function dashboardTick() {
    const { sweeps } = await getJson("/sweeps?limit=25");
    refreshWorkers(); // not awaited: a slow answer never holds up the sweeps
    view.selected = selectedFromHash() || view.selected || (sweeps[0] && sweeps[0].sweep_id) || null;
    renderSweeps(sweeps);
    if (!view.selected) return;
    const sweep = sweeps.find((item) => item.sweep_id === view.selected)
      || (await getJson("/sweeps/" + encodeURIComponent(view.selected)));
    showSweep(sweep);
  }

  // --- the job page ---------------------------------------------------------------------------

  const RECORD_FIELDS = ["id", "sweep_id", "state", "variant", "seed", "lr", "steps", "log_every", "device",
    "final_cost", "last_logged_cost", "accuracy", "hypothesis", "predicted", "attempt", "worker", "device_name", "torch_version", "engine",
    "stop_below", "stop_when_solved", "steps_trained", "stopped_at_step", "stop_reason",
    "created_at", "started_at", "finished_at", "duration_seconds", "error"];
  const jobView = { state: null, plotAt: 0 };

  function renderRecord(job) {
    const body = $("#record tbody");
    body.replaceChildren();
    for (const field of RECORD_FIELDS) {
      let value = job[field];
      if (Array.isArray(value)) value = "[" + value.map((item) => number(item)).join(", ") + "]";
      else if (typeof value === "number") value = number(value, 6);
      const row = element("tr");
      row.append(element("th", field), element("td", value === null || value === undefined ? "–" : value));
      if (field === "error" && value) row.className = "error";
      body.append(row);
    }
  }

  async function jobTick() {
    const jobId = document.body.dataset.jobId;
    const job = await getJson("/jobs/" + encodeURIComponent(jobId));
    renderRecord(job);
    const running = !TERMINAL.includes(job.state);
    if (job.state !== jobView.state || (running && Date.now() - jobView.plotAt >= PLOT_REFRESH_MS)) {
      $("#plot").src = "/jobs/" + encodeURIComponent(jobId) + "/plot.png?t=" + Date.now();
      jobView.plotAt = Date.now();
    }
    jobView.state = job.state;
    $("#back").href = "/#" + job.sweep_id;
    return running;
  }

  // --- polling: one request at a time, every POLL_MS ------------------------------------------

  function poll(tick) {
    const run = async () => {
      let again = true;
      try {
        again = (await tick()) !== false;
        setLive(true);
      } catch (error) {
        setLive(false);
        console.warn(error);
      }
      if (again) setTimeout(run, POLL_MS);
    };
    run();
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.page === "dashboard") {
      window.addEventListener("hashchange", () => {
        view.selected = selectedFromHash();
        forgetShown();
      });
      $("#by").addEventListener("change", forgetShown);
      poll(dashboardTick);
    } else if (document.body.dataset.page === "job") {
      poll(jobTick);
    }
  });
})();
