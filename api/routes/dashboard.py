"""The dashboard (issue 5): the sweeps with live state counts, their grouped results and cost curves.

Plain HTML, CSS and vanilla JavaScript served by the API itself: nothing is fetched from another host
at run time (no CDN), and the Content-Security-Policy says so (scripts, styles and images from this
origin only, no inline script). The page polls the JSON routes with ``fetch`` every second; all data is
put into the page with ``textContent``, never as HTML, since sweep names come from users.

Authentication: a browser cannot add a bearer header to a page load or an ``<img>``, so when
XORJOBS_API_TOKEN is set, ``POST /login`` takes the token from a form and sets an HttpOnly,
SameSite=Strict session cookie (an HMAC of the token, see ``api.deps.session_value``) that the token
dependency accepts in place of the header. A page load without it is redirected to ``/login``.
"""

from __future__ import annotations

import html
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from xorjobs.analysis import DEFAULT_THRESHOLD
from xorjobs.api.deps import SESSION_COOKIE, ServiceDep, is_authenticated, session_value
from xorjobs.defaults import JOB_STATES, SWEEP_ID_PREFIX, TERMINAL_STATES
from xorjobs.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC_FOLDER = Path(__file__).resolve().parent.parent / "static"
STATIC_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "docs.js": "text/javascript"}
"""Served by name from ``api/static``; anything else is 404 (no path is ever built from the request)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
GROUPINGS = ("variant", "variant,lr", "lr", "seed", "device")
"""The group-by choices the dashboard offers (any comma list of ``GROUP_FIELDS`` works in the API)."""


PAGE_CONSTANTS = {
    "job_states": " ".join(JOB_STATES),
    "terminal_states": " ".join(state for state in JOB_STATES if state in TERMINAL_STATES),
    "sweep_id_prefix": SWEEP_ID_PREFIX,
}
"""What dashboard.js reads from ``<body data-...>`` instead of writing it out again (xorjobs/defaults.py)."""


def _page(request: Request, title: str, body: str, page: str, **data: str) -> str:
    # "log out" only where there is a login: with no token set nobody logs in.
    logout = (
        '<form method="post" action="/logout" class="logout"><button type="submit">log out</button></form>'
        if request.app.state.service.settings.api_token
        else ""
    )
    attributes = "".join(
        f' data-{name.replace("_", "-")}="{html.escape(value)}"'
        for name, value in {**PAGE_CONSTANTS, **data}.items()
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head>
<body data-page="{page}"{attributes}>
<header>
  <a class="brand" href="/">xorjobs</a>
  <span class="live" id="live" title="updates every second">●</span>
  {logout}
</header>
<main>
{body}
</main>
</body>
</html>
"""


def _html(content: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=SECURITY_HEADERS)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _safe_next(target: str) -> str:
    """Only a path on this site (never ``//host`` or ``https://host``): no open redirect."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    if not is_authenticated(request):
        return login_redirect(request)
    options = "".join(f'<option value="{value}">{value.replace(",", " × ")}</option>' for value in GROUPINGS)
    body = f"""
<section class="sweeps">
  <h1>Sweeps</h1>
  <table id="sweeps"><thead><tr>
    <th>sweep</th><th>name</th><th>created</th><th>jobs</th><th>states</th><th>progress</th>
  </tr></thead><tbody></tbody></table>
  <p class="empty" id="no-sweeps" hidden>No sweeps yet: submit one with <code>xorjobs submit</code>.</p>
</section>
<section class="workers">
  <h2>Workers</h2>
  <table id="workers"><thead><tr>
    <th>worker</th><th>host</th><th>state</th><th>queues</th><th>engines</th><th>heartbeat</th><th>training</th>
  </tr></thead><tbody></tbody></table>
  <p class="empty" id="no-workers" hidden>No live worker: start one with <code>xorjobs worker</code>.</p>
</section>
<section class="sweep" id="sweep" hidden>
  <h2>Sweep <span id="sweep-id"></span> <span id="sweep-name" class="muted"></span></h2>
  <div class="counts" id="sweep-counts"></div>
  <div id="sweep-bar"></div>
  <div class="panels">
    <div class="panel wide">
      <h3>Results by
        <select id="by">{options}</select>
        <span class="muted">(converged: cost &lt; <span id="threshold">{DEFAULT_THRESHOLD:g}</span>)</span>
      </h3>
      <p class="loading" id="summary-loading">Loading the results…</p>
      <table id="summary"><thead></thead><tbody></tbody></table>
      <p class="muted small">Solve rate: succeeded jobs with accuracy 1.0, with a 95% Wilson interval.
      Final cost over finite values (diverged jobs counted apart).</p>
    </div>
    <div class="panel">
      <h3>Cost curves</h3>
      <p class="loading" id="plot-loading">Drawing the cost curves…</p>
      <img id="plot" alt="cost curves of the sweep" width="800" height="500">
    </div>
  </div>
  <h3>Jobs</h3>
  <table id="jobs"><thead><tr>
    <th>job</th><th>variant</th><th>seed</th><th>lr</th><th>state</th><th>final cost</th><th>accuracy</th>
    <th>steps</th>
  </tr></thead><tbody></tbody></table>
</section>
"""
    return _html(_page(request, "xorjobs dashboard", body, "dashboard"))


@router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, service: ServiceDep) -> Response:
    if not is_authenticated(request):
        return login_redirect(request)
    try:
        service.job(job_id)  # an unknown id was a 200 with an empty record table
    except NotFound as error:
        missing = (
            f'<p><a href="/" id="back">← all sweeps</a></p>\n<p class="error">{html.escape(str(error))}</p>'
        )
        return _html(_page(request, f"xorjobs: no job {job_id}", missing, "missing"), status_code=404)
    body = f"""
<p><a href="/" id="back">← all sweeps</a></p>
<h1>Job <span id="job-id">{html.escape(job_id)}</span></h1>
<div class="panels">
  <div class="panel"><table id="record" class="record"><tbody></tbody></table></div>
  <div class="panel"><img id="plot" alt="cost curve of the job" width="800" height="500"></div>
</div>
"""
    return _html(_page(request, f"xorjobs job {job_id}", body, "job", job_id=job_id))


def _login_page(next_path: str, message: str = "") -> str:
    error = f'<p class="error" id="login-error">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xorjobs: log in</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body class="login">
<form method="post" action="/login" class="login-form">
  <h1>xorjobs</h1>
  <label for="token">API token (XORJOBS_API_TOKEN)</label>
  <input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
  <input type="hidden" name="next" value="{html.escape(_safe_next(next_path))}">
  {error}
  <button type="submit" id="login">Log in</button>
</form>
</body>
</html>
"""


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, next_path: Annotated[str, Query(alias="next", max_length=2000)] = "/"
) -> Response:
    if not request.app.state.service.settings.api_token:
        return RedirectResponse(_safe_next(next_path), status_code=303)
    return _html(_login_page(next_path))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    # The form is parsed here (application/x-www-form-urlencoded) rather than with FastAPI's Form(),
    # which would add python-multipart to the API's dependencies for two fields.
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = fields.get("token", [""])[0]
    next_path = fields.get("next", ["/"])[0]
    expected = request.app.state.service.settings.api_token
    if expected and not secrets.compare_digest(token.encode(), expected.encode()):
        return _html(_login_page(next_path, "That is not the API token."), status_code=401)
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    if expected:
        response.set_cookie(
            SESSION_COOKIE,
            session_value(expected),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return Response(status_code=404)
    return FileResponse(STATIC_FOLDER / name, media_type=media_type, headers={"Cache-Control": "no-cache"})
