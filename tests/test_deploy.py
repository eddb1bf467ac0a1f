#!/usr/bin/env python3
"""test_deploy.py: checks what deploy/ ships without a cluster: the Kubernetes
manifests (parse, required fields, probes on /healthz and /readyz at the
metrics port, PodDisruptionBudgets, non-root, the L and W clusters apart with
different brokers in each datacenter, each lane's configuration accepted by
`coupond --check`), the Prometheus rules and the Grafana dashboard (every
coupond_ metric they use is one src/metrics.c exports), the systemd unit, and
that the Dockerfile builds with the README's "Build and install" steps.

usage: test_deploy.py BUILD_DIR SOURCE_DIR"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

build, src = sys.argv[1], sys.argv[2]
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {name}{': ' + str(detail) if detail else ''}", file=sys.stderr)


def path(*p):
    return os.path.join(src, *p)


# ---- the metrics src/metrics.c exports ------------------------------------
metrics_c = open(path("src", "metrics.c")).read()
exported = set(re.findall(r'mx_family\(\s*b,\s*"(coupond_[a-z_]+)",\s*"(\w+)"', metrics_c))
families = {name: kind for name, kind in exported}
check("metrics.c exports families", len(families) >= 15, sorted(families))


def known_metric(name):
    if name in families:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and families.get(base) == "histogram":
            return True
    return False


def metric_names(expr):
    return set(re.findall(r"\b(coupond_[a-z_]+)\b", expr))


# ---- Kubernetes ------------------------------------------------------------
docs = {}  # (kind, namespace, name) -> object, the base
for f in sorted(glob.glob(path("deploy", "k8s", "**", "*.yaml"), recursive=True)):
    try:
        objs = [o for o in yaml.safe_load_all(open(f)) if o is not None]
    except yaml.YAMLError as e:
        check(f"{f} parses", False, e)
        continue
    check(f"{f} parses", len(objs) > 0)
    for o in objs:
        check(f"{f}: apiVersion and kind", "apiVersion" in o and "kind" in o)
        if "/base/" in f and o.get("kind") != "Kustomization":
            ns = o["metadata"].get("namespace")
            if ns is None:  # from the lane's kustomization
                ns = yaml.safe_load(open(os.path.join(os.path.dirname(f), "kustomization.yaml")))[
                    "namespace"
                ]
            docs[(o["kind"], ns, o["metadata"]["name"])] = o

# Every kustomization's resources and patches exist.
for f in glob.glob(path("deploy", "k8s", "**", "kustomization.yaml"), recursive=True):
    k = yaml.safe_load(open(f))
    d = os.path.dirname(f)
    for r in k.get("resources", []):
        check(f"{f}: resource {r} exists", os.path.exists(os.path.join(d, r)))
    for p in k.get("patches", []):
        check(f"{f}: patch {p['path']} exists", os.path.exists(os.path.join(d, p["path"])))

lanes = {"l": "kafka_brokers", "w": "amqp_url"}
for lane, broker_key in lanes.items():
    ns = f"coupond-{lane}"
    dep = docs.get(("Deployment", ns, f"coupond-{lane}"))
    cm = docs.get(("ConfigMap", ns, f"coupond-{lane}"))
    check(f"{lane}: Deployment", dep is not None)
    check(f"{lane}: ConfigMap", cm is not None)
    check(f"{lane}: Secret", ("Secret", ns, f"coupond-{lane}") in docs)
    check(f"{lane}: Namespace of its own", ("Namespace", None, ns) in docs or any(
        k[0] == "Namespace" and k[2] == ns for k in docs))
    pdb = docs.get(("PodDisruptionBudget", ns, f"coupond-{lane}"))
    check(f"{lane}: PodDisruptionBudget", pdb is not None)
    if not dep or not cm:
        continue
    spec = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(f"{lane}: selector matches the pods",
          dep["spec"]["selector"]["matchLabels"].items() <= labels.items())
    if pdb:
        check(f"{lane}: PDB selects the pods", pdb["spec"]["selector"]["matchLabels"].items() <= labels.items())
        check(f"{lane}: PDB limits disruption", "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"])
    check(f"{lane}: replicas > 1", dep["spec"].get("replicas", 1) > 1)
    check(f"{lane}: pod non-root", spec["securityContext"].get("runAsNonRoot") is True)
    (c,) = spec["containers"]
    args = c["args"]
    check(f"{lane}: --role {lane}", args[args.index("--role") + 1] == lane)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    cfg_text = cm["data"][f"{lane}.cfg"]
    listen = re.search(r'listen\s*=\s*"([^"]*)"', cfg_text)
    check(f"{lane}: metrics.listen set", listen is not None)
    if listen:
        check(f"{lane}: metrics port matches metrics.listen",
              ports.get("metrics") == int(listen.group(1).rsplit(":", 1)[1]), ports)
        check(f"{lane}: metrics.listen on every interface", listen.group(1).startswith("0.0.0.0:"))
    for probe, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = c.get(probe, {}).get("httpGet", {})
        check(f"{lane}: {probe} path", g.get("path") == want, g)
        check(f"{lane}: {probe} port", g.get("port") in ("metrics", ports.get("metrics")), g)
    check(f"{lane}: resources", {"requests", "limits"} <= set(c.get("resources", {})))
    sc = c.get("securityContext", {})
    check(f"{lane}: no privilege escalation", sc.get("allowPrivilegeEscalation") is False)
    check(f"{lane}: read-only root", sc.get("readOnlyRootFilesystem") is True)
    check(f"{lane}: capabilities dropped", sc.get("capabilities", {}).get("drop") == ["ALL"])
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    check(f"{lane}: scrape port", ann.get("prometheus.io/port") == str(ports.get("metrics")))
    # Every $(VAR) in args is defined; every configMapKeyRef / secretKeyRef key exists.
    env = {e["name"]: e for e in c.get("env", [])}
    for a in args:
        for v in re.findall(r"\$\((\w+)\)", a):
            check(f"{lane}: $({v}) defined", v in env)
    secret = docs.get(("Secret", ns, f"coupond-{lane}"), {})
    for e in env.values():
        ref = e.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            check(f"{lane}: ConfigMap key {ref['configMapKeyRef']['key']}",
                  ref["configMapKeyRef"]["key"] in cm["data"])
        if "secretKeyRef" in ref:
            check(f"{lane}: Secret key {ref['secretKeyRef']['key']}",
                  ref["secretKeyRef"]["key"] in secret.get("stringData", {}))
    # Secrets the configuration reads from the environment are in env.
    for v in re.findall(r'"env:(\w+)"', cfg_text):
        check(f"{lane}: env {v} for the configuration", v in env)


def overlay(dc):
    """The effective ConfigMap data of each lane in an overlay: base + patches."""
    d = path("deploy", "k8s", "overlays", dc)
    k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
    check(f"{dc}: builds on the base", "../../base" in k.get("resources", []))
    data = {lane: dict(docs[("ConfigMap", f"coupond-{lane}", f"coupond-{lane}")]["data"]) for lane in lanes}
    for p in k.get("patches", []):
        o = yaml.safe_load(open(os.path.join(d, p["path"])))
        if o["kind"] == "ConfigMap":
            lane = o["metadata"]["name"].rsplit("-", 1)[1]
            check(f"{dc}: patch {p['path']} targets a base ConfigMap",
                  o["metadata"].get("namespace") == f"coupond-{lane}" and lane in lanes)
            data[lane].update(o.get("data", {}))
    return data


dcs = sorted(os.listdir(path("deploy", "k8s", "overlays")))
check("two datacenters", len(dcs) >= 2, dcs)
effective = {dc: overlay(dc) for dc in dcs}
for dc, data in effective.items():
    l_brokers, w_url = data["l"]["kafka_brokers"], data["w"]["amqp_url"]
    w_host = re.sub(r"^amqps?://([^@/]*@)?", "", w_url).split("/")[0]
    check(f"{dc}: L and W on different brokers", w_host not in l_brokers, (l_brokers, w_url))
    check(f"{dc}: cluster names differ", data["l"]["cluster"] != data["w"]["cluster"])
    check(f"{dc}: both lanes share the store", data["l"]["store_conninfo"] == data["w"]["store_conninfo"])
for a in dcs:
    for b in dcs:
        if a < b:
            for lane, key in lanes.items():
                check(f"{a}/{b}: {lane} brokers differ", effective[a][lane][key] != effective[b][lane][key])
                check(f"{a}/{b}: {lane} cluster names differ",
                      effective[a][lane]["cluster"] != effective[b][lane]["cluster"])

# Each lane's configuration, as a pod of each datacenter gets it, passes --check.
coupond = os.path.join(build, "coupond")
if os.access(coupond, os.X_OK):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, COUPOND_STORE_PASSWORD="x", COUPOND_AMQP_PASSWORD="y",
                   COUPOND_KEY_K1="0123456789abcdef0123456789abcdef")
        env.pop("COUPOND_CONFIG", None)
        for dc, data in effective.items():
            for lane, key in lanes.items():
                f = os.path.join(tmp, f"{lane}.cfg")
                open(f, "w").write(data[lane][f"{lane}.cfg"])
                setting = "lanes.l.kafka.brokers" if lane == "l" else "lanes.w.amqp.url"
                r = subprocess.run([coupond, "--config", f, "--set", "cluster=" + data[lane]["cluster"],
                                    "--set", f"{setting}={data[lane][key]}",
                                    "--set", "store.conninfo=" + data[lane]["store_conninfo"], "--check"],
                                   env=env, capture_output=True, text=True)
                check(f"{dc}: {lane}.cfg passes coupond --check", r.returncode == 0, r.stderr.strip())
else:
    print(f"skipping coupond --check: no {coupond}", file=sys.stderr)

# ---- Prometheus rules ----------------------------------------------------------
rules_file = path("deploy", "prometheus", "alerts.yml")
rules = yaml.safe_load(open(rules_file))
alerts = {}
for g in rules["groups"]:
    check(f"rule group {g.get('name')} has rules", g.get("name") and g.get("rules"))
    for r in g["rules"]:
        check(f"rule {r.get('alert')}: alert, expr, labels.severity, annotations",
              r.get("alert") and r.get("expr") and r.get("labels", {}).get("severity")
              and r.get("annotations", {}).get("summary") and r.get("annotations", {}).get("runbook"))
        alerts[r["alert"]] = r
        for m in metric_names(r["expr"]):
            check(f"rule {r['alert']}: {m} is exported by src/metrics.c", known_metric(m))
        runbook = r.get("annotations", {}).get("runbook", "")
        doc, _, anchor = runbook.partition("#")
        check(f"rule {r['alert']}: runbook {doc} exists", os.path.exists(path(doc)))
        if anchor and os.path.exists(path(doc)):
            heads = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.*)$", open(path(doc)).read(), re.M)}
            check(f"rule {r['alert']}: runbook anchor #{anchor}", anchor in heads)
used = " ".join(r["expr"] for r in alerts.values())
for what, pattern in (("a pending payment past the deadline", "coupond_oldest_pending_seconds"),
                      ("dead letters growing", "coupond_dead_letters_total"),
                      ("a lane with no consumer", "coupond_broker_up"),
                      ("refunds spiking", "coupond_refunds_total"),
                      ("readiness", "coupond_ready"),
                      ("target down", 'up{job="coupond"}')):
    check(f"an alert on {what}", pattern in used)
promtool = shutil.which("promtool")
if promtool:
    r = subprocess.run([promtool, "check", "rules", rules_file], capture_output=True, text=True)
    check("promtool check rules", r.returncode == 0, r.stdout + r.stderr)
else:
    print("promtool not installed (Debian package prometheus): rule syntax not checked", file=sys.stderr)

# ---- Grafana dashboard ---------------------------------------------------------
dash = json.load(open(path("deploy", "grafana", "coupond.json")))
check("dashboard: title, uid, panels", dash.get("title") and dash.get("uid") and dash.get("panels"))
ids = [p["id"] for p in dash["panels"]]
check("dashboard: panel ids unique", len(ids) == len(set(ids)))
panel_metrics = set()
for p in dash["panels"]:
    check(f"panel {p.get('title')}: type, gridPos, targets", p.get("type") and p.get("gridPos") and p.get("targets"))
    for t in p.get("targets", []):
        for m in metric_names(t["expr"]):
            panel_metrics.add(m)
            check(f"panel {p['title']}: {m} is exported by src/metrics.c", known_metric(m))
for m in ("coupond_issued_total", "coupond_outcome_latency_seconds_bucket", "coupond_oldest_pending_seconds",
          "coupond_refunds_total", "coupond_dead_letters_total"):
    check(f"dashboard shows {m}", m in panel_metrics)

# ---- systemd -------------------------------------------------------------------
unit_file = path("deploy", "systemd", "coupond@.service")
unit = open(unit_file).read()
for line in ("Type=notify", "ExecStart=/usr/local/bin/coupond --role %i --config /etc/coupond/%i.cfg",
             "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "NoNewPrivileges=yes",
             "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
             "SystemCallFilter=@system-service", "CapabilityBoundingSet=", "MemoryDenyWriteExecute=yes"):
    check(f"unit: {line}", re.search(r"^" + re.escape(line) + r"$", unit, re.M) is not None)
check("unit: WatchdogSec", re.search(r"^WatchdogSec=\d+", unit, re.M) is not None)
check("unit: RestrictAddressFamilies", re.search(r"^RestrictAddressFamilies=.*AF_INET", unit, re.M) is not None)
analyze = shutil.which("systemd-analyze")
if analyze:
    r = subprocess.run([analyze, "verify", unit_file.replace("coupond@", "coupond@") ], capture_output=True, text=True)
    # The binary is not installed here; anything else it says is a fault.
    other = [l for l in (r.stdout + r.stderr).splitlines() if l and "is not executable" not in l]
    check("systemd-analyze verify", not other, other)

# ---- Dockerfile vs README ------------------------------------------------------
readme = open(path("README.md")).read()
section = re.search(r"^## Build and install\n(.*?)(?=^## )", readme, re.M | re.S)
check("README has a Build and install section", section is not None)
readme_steps = re.findall(r"^(cmake .*)$", section.group(1), re.M) if section else []
dockerfile = open(path("deploy", "docker", "Dockerfile")).read()
docker_steps = re.findall(r"^RUN (cmake .*)$", dockerfile, re.M)
check("README lists the build steps", len(readme_steps) >= 3, readme_steps)
check("Dockerfile builds with the README's steps", docker_steps == readme_steps, (docker_steps, readme_steps))
froms = re.findall(r"^FROM (\S+)", dockerfile, re.M)
check("Dockerfile: multi-stage", len(froms) >= 2, froms)
check("Dockerfile: Debian bookworm", all(f.startswith("debian:bookworm") for f in froms), froms)
user = re.findall(r"^USER (\S+)", dockerfile, re.M)
check("Dockerfile: runs as non-root", user and user[-1].split(":")[0] not in ("root", "0"), user)
final = dockerfile[dockerfile.rfind("\nFROM "):]
check("Dockerfile: no compiler in the runtime image", not re.search(r"\b(gcc|cmake|-dev)\b", final))
check(".dockerignore leaves out build trees and .git",
      {".git", "build", ".run"} <= set(open(path(".dockerignore")).read().split()))

print(f"test_deploy: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
