"""Building blocks of the dashboards: selectors, targets, panels, variables, the dashboard.

Every panel and every target get the `datasource` variable; every selector made with
`Selectors` the `job=~"$job"` and `instance=~"$instance"` filters; ids and grid positions are
assigned in order; a panel without a unit is refused. Dashboards are built from a `Config`
(mixin/config.py), thresholds included.
"""

from __future__ import annotations

from .config import Config

DS = {"type": "prometheus", "uid": "${datasource}"}
FILTERS = 'job=~"$job", instance=~"$instance"'


class Selectors:
    """`sel("scribewatch_ready")` -> `scribewatch_ready{job=~"$job", instance=~"$instance"}`.

    `foreign=True` is for series every target has (`up`, client_python's `process_*`): they
    also get the config's job selector, since "All" of the job variable (`.+`) would take
    every scrape job of the Prometheus. `rate` is the window of rate()/increase().
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.rate = cfg.dashboard_rate_interval

    def __call__(self, metric: str, extra: str = "", *, foreign: bool = False) -> str:
        matchers = ([self.cfg.job_selector] if foreign else []) + [FILTERS]
        if extra:
            matchers.append(extra)
        return f"{metric}{{{', '.join(matchers)}}}"


GREEN, YELLOW, ORANGE, RED, BLUE, GREY = "green", "yellow", "orange", "red", "blue", "text"
OUTCOME_COLORS = {"succeeded": GREEN, "failed": RED, "skipped": BLUE}


# --- building blocks --------------------------------------------------------------------------
def target(expr: str, legend: str = "__auto", *, instant: bool = False, fmt: str | None = None,
           hide: bool = False) -> dict:
    t = {"datasource": DS, "editorMode": "code", "expr": expr, "legendFormat": legend,
         "range": not instant, "instant": instant}
    if fmt:
        t["format"] = fmt
    if hide:
        t["hide"] = True
    return t


def steps(*pairs) -> dict:
    """steps((None, GREEN), (0.5, YELLOW), (1, RED)) -> absolute thresholds."""
    return {"mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in pairs]}


def value_map(mapping: dict) -> list[dict]:
    return [{"type": "value",
             "options": {str(k): {"text": t, "color": c, "index": i}
                         for i, (k, (t, c)) in enumerate(mapping.items())}}]


UP_DOWN = value_map({1: ("Up", GREEN), 0: ("Down", RED)})
YES_NO = value_map({1: ("Yes", GREEN), 0: ("No", RED)})


def color_override(pattern: str, color: str) -> dict:
    return {"matcher": {"id": "byRegexp", "options": pattern},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}


def panel(kind: str, title: str, description: str, targets: list[dict], *, w: int, h: int,
          unit: str, min=None, max=None, decimals=None, thresholds: dict | None = None,
          mappings: list | None = None, overrides: list | None = None,
          options: dict | None = None, custom: dict | None = None, color: dict | None = None,
          transformations: list | None = None, links: list | None = None,
          bad: str | None = None, alert: str | None = None) -> dict:
    """One panel. `bad` (what bad looks like on it) and `alert` (the alerts it relates to, in
    words) are not Grafana's: docs/dashboards.md is generated from them and the description."""
    if not unit:
        raise ValueError(f"{title}: every panel needs a unit ('none' for labels or mappings)")
    defaults: dict = {"unit": unit}
    if min is not None:
        defaults["min"] = min
    if max is not None:
        defaults["max"] = max
    if decimals is not None:
        defaults["decimals"] = decimals
    defaults["thresholds"] = thresholds or steps((None, GREEN))
    defaults["mappings"] = mappings or []
    if color:
        defaults["color"] = color
    if custom:
        defaults["custom"] = custom
    for letter, t in zip("ABCDEFGHIJ", targets):
        t["refId"] = letter
    p = {"type": kind, "title": title, "description": description, "datasource": DS,
         "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
         "options": options or {}, "_w": w, "_h": h, "_doc": {"bad": bad, "alert": alert}}
    if transformations:
        p["transformations"] = transformations
    if links:
        p["links"] = links
    return p


def timeseries(title, description, targets, *, w=12, h=8, unit, stacked=False,
               threshold_style: str | None = None, stepped=False, fill=10, legend_calcs=None,
               **kw) -> dict:
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": fill, "showPoints": "never",
              "spanNulls": False, "axisSoftMin": 0,
              "lineInterpolation": "stepAfter" if stepped else "linear",
              "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
              "thresholdsStyle": {"mode": threshold_style or "off"}}
    opts = {"tooltip": {"mode": "multi", "sort": "desc"},
            "legend": {"showLegend": True, "displayMode": "table" if legend_calcs else "list",
                       "placement": "bottom", "calcs": legend_calcs or []}}
    kw.setdefault("color", {"mode": "palette-classic"})
    return panel("timeseries", title, description, targets, w=w, h=h, unit=unit, custom=custom,
                 options=opts, **kw)


def stat(title, description, targets, *, w=4, h=4, unit, color_mode="background",
         graph=False, text_mode="auto", calc="lastNotNull", **kw) -> dict:
    opts = {"reduceOptions": {"calcs": [calc], "fields": "", "values": False},
            "colorMode": color_mode, "graphMode": "area" if graph else "none",
            "justifyMode": "auto", "orientation": "auto", "textMode": text_mode,
            "wideLayout": True, "showPercentChange": False}
    kw.setdefault("color", {"mode": "thresholds"})
    return panel("stat", title, description, targets, w=w, h=h, unit=unit, options=opts, **kw)


def gauge(title, description, targets, *, w=6, h=6, unit, **kw) -> dict:
    opts = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto", "showThresholdLabels": False, "showThresholdMarkers": True}
    kw.setdefault("color", {"mode": "thresholds"})
    return panel("gauge", title, description, targets, w=w, h=h, unit=unit, options=opts, **kw)


def bargauge(title, description, targets, *, w=12, h=8, unit, calc="lastNotNull",
             display="gradient", **kw) -> dict:
    opts = {"reduceOptions": {"calcs": [calc], "fields": "", "values": False},
            "orientation": "horizontal", "displayMode": display, "showUnfilled": True,
            "valueMode": "color", "namePlacement": "auto", "sizing": "auto",
            "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300}
    kw.setdefault("color", {"mode": "thresholds"})
    return panel("bargauge", title, description, targets, w=w, h=h, unit=unit, options=opts, **kw)


def table(title, description, targets, *, w=24, h=6, unit="none",
          hide_columns=("Time", "__name__"),
          rename: dict | None = None, merge=False, **kw) -> dict:
    transformations = []
    if merge:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {
        "excludeByName": {c: True for c in hide_columns},
        "indexByName": {}, "renameByName": rename or {}}})
    opts = {"showHeader": True, "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": ""}}
    custom = {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}
    return panel("table", title, description, targets, w=w, h=h, unit=unit, options=opts,
                 custom=custom,
                 transformations=transformations, **kw)


def heatmap(title, description, targets, *, w=6, h=8, unit="s", **kw) -> dict:
    opts = {"calculate": False,
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
            "rowsFrame": {"layout": "auto"},
            "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange",
                      "scale": "exponential", "exponent": 0.5, "steps": 64, "reverse": False},
            "cellGap": 1, "filterValues": {"le": 1e-9},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
            "legend": {"show": True}, "showValue": "never",
            "exemplars": {"color": "rgba(255,0,255,0.7)"}}
    custom = {"hideFrom": {"legend": False, "tooltip": False, "viz": False},
              "scaleDistribution": {"type": "linear"}}
    return panel("heatmap", title, description, targets, w=w, h=h, unit=unit, options=opts,
                 custom=custom, **kw)


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_w": 24, "_h": 1}


# --- dashboard --------------------------------------------------------------------------------
def layout(panels: list[dict]) -> list[dict]:
    """Assign ids and gridPos left to right, top to bottom (a row panel starts a new line)."""
    x = y = line_h = 0
    out = []
    for pid, p in enumerate(panels, start=1):
        w, h = p.pop("_w"), p.pop("_h")
        if p["type"] == "row" or x + w > 24:
            y += line_h
            x = line_h = 0
        p["id"] = pid
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        line_h = max(line_h, h)
        if p["type"] == "row":
            y += h
            x = line_h = 0
        out.append(p)
    return out


def _query_variable(name: str, label: str, query: str) -> dict:
    """A multi-select Prometheus label variable whose "All" is `.+` (dashboard-linter)."""
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query,
            "query": {"qryType": 1, "query": query,
                      "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "current": {}, "hide": 0, "includeAll": True, "allValue": ".+", "multi": True,
            "options": [], "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1}


def templating(cfg: Config) -> dict:
    """Data Source, then the daemons' jobs, then their instances (of the jobs chosen)."""
    metric = cfg.instance_metric
    return {"list": [
        {"name": "datasource", "label": "Data Source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0, "includeAll": False, "multi": False,
         "options": [], "refresh": 1, "regex": "", "skipUrlSync": False},
        _query_variable("job", "Job", f"label_values({metric}, job)"),
        _query_variable("instance", "Instance",
                        f'label_values({metric}{{job=~"$job"}}, instance)'),
    ]}


def dashboard(cfg: Config, name: str, title: str, description: str, panels: list[dict]) -> dict:
    """A dashboard with a fixed uid (`<prefix>-<name>`), the config's tags, not editable."""
    tags = list(cfg.dashboard_tags)
    return {
        "uid": f"{cfg.dashboard_uid_prefix}-{name}",
        "title": cfg.dashboard_title_prefix + title,
        "description": description,
        "tags": tags,
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": cfg.dashboard_refresh,
        "time": {"from": cfg.dashboard_time_from, "to": "now"},
        "timepicker": {},
        "timezone": cfg.dashboard_timezone,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": tags[0], "type": "dashboards", "tags": tags,
                   "asDropdown": False, "includeVars": True, "keepTime": True,
                   "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
        "templating": templating(cfg),
        "panels": layout(panels),
    }
