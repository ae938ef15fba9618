#!/usr/bin/env python3
"""Structural checks of the deploy artifacts (run by deploy/check.sh).

Parses every YAML and JSON file under deploy/ and checks what the tools cannot:
metric names exist in docs/metrics.md, PUSHGATE_* variables are real settings, the
Kubernetes drain arithmetic holds, the Dockerfile builds what the tests run.
Prints one line per check; exits 1 if any failed.
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
results = []


def check(name, fn):
    try:
        detail = fn()
        results.append(True)
        print(f"ok   {name}" + (f" ({detail})" if detail else ""))
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        results.append(False)
        print(f"FAIL {name}: {e}")


def rel(p):
    return str(p.relative_to(ROOT))


# --- what the code and docs define -------------------------------------------------
def documented_metrics():
    text = (ROOT / "docs/metrics.md").read_text()
    return set(re.findall(r"`(pushgate_[a-z0-9_]+)", text))


def documented_settings():
    text = (ROOT / "docs/configuration.md").read_text()
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, re.M))


METRICS = documented_metrics()
SETTINGS = documented_settings()


def metric_names_in(text):
    names = set(re.findall(r"\b(pushgate_[a-z0-9_]+)", text))
    out = set()
    for n in names:
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix) and n[: -len(suffix)] in METRICS:
                n = n[: -len(suffix)]
        out.add(n)
    return out


def known_metrics(text, where):
    used = metric_names_in(text)
    unknown = sorted(used - METRICS)
    if unknown:
        raise ValueError(f"{where} uses metrics not in docs/metrics.md: {unknown}")
    return f"{len(used)} metric names, all documented"


def pushgate_env_ok(env, where):
    bad = []
    for k in env:
        if k.startswith("PUSHGATE_"):
            field = k[len("PUSHGATE_"):].lower()
            if field not in SETTINGS and k not in ("PUSHGATE_CONFIG", "PUSHGATE_LOG"):
                bad.append(k)
    if bad:
        raise ValueError(f"{where}: unknown settings {bad} (the node would exit 64)")


# --- YAML --------------------------------------------------------------------------
yaml_files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
docs = {}


def parse_yaml(p):
    def f():
        loaded = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
        if not loaded:
            raise ValueError("empty")
        docs[p] = loaded
        return f"{len(loaded)} document(s)"
    return f


for p in yaml_files:
    check(f"YAML parses: {rel(p)}", parse_yaml(p))


def k8s_objects():
    objs = []
    for p in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for d in docs.get(p, []):
            objs.append((p, d))
    return objs


def check_k8s_shape():
    n = 0
    for p, d in k8s_objects():
        for key in ("apiVersion", "kind"):
            if key not in d:
                raise ValueError(f"{rel(p)}: a document without {key}")
        if not d.get("metadata", {}).get("name"):
            raise ValueError(f"{rel(p)}: {d['kind']} without metadata.name")
        n += 1
    kinds = sorted({d["kind"] for _, d in k8s_objects()})
    want = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"}
    if not want <= set(kinds):
        raise ValueError(f"missing kinds {sorted(want - set(kinds))}")
    return f"{n} objects: {', '.join(kinds)}"


def the(kind):
    found = [d for _, d in k8s_objects() if d["kind"] == kind]
    if len(found) != 1:
        raise ValueError(f"expected one {kind}, found {len(found)}")
    return found[0]


def check_deployment():
    dep = the("Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    pushgate_env_ok(env, "Deployment env")
    if pod.get("enableServiceLinks") is not False:
        raise ValueError("enableServiceLinks must be false (service links inject unknown PUSHGATE_* variables)")
    if env.get("PUSHGATE_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        raise ValueError("PUSHGATE_NODE_ID must come from the pod name")
    if c["readinessProbe"]["httpGet"]["path"] != "/readyz" or c["livenessProbe"]["httpGet"]["path"] != "/livez":
        raise ValueError("probes must be /readyz (readiness) and /livez (liveness)")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        port = c[probe]["httpGet"]["port"]
        if ports.get(port, port) != 8081:
            raise ValueError(f"{probe} must hit the internal port 8081")
    cmd = c["lifecycle"]["preStop"]
    pre = cmd["sleep"]["seconds"] if "sleep" in cmd else int(cmd["exec"]["command"][-1])
    grace_ms = int(env.get("PUSHGATE_SHUTDOWN_GRACE_MS", {}).get("value", 20000))
    window_ms = int(env.get("PUSHGATE_DRAIN_WINDOW_MS", {}).get("value", 10000))
    if window_ms >= grace_ms:
        raise ValueError(f"drain_window_ms {window_ms} must be below shutdown_grace_ms {grace_ms}")
    tgp = pod["terminationGracePeriodSeconds"]
    if tgp <= pre + grace_ms / 1000:
        raise ValueError(f"terminationGracePeriodSeconds {tgp} <= preStop {pre} s + shutdown grace {grace_ms / 1000} s")
    sc = pod.get("securityContext", {})
    if not sc.get("runAsNonRoot"):
        raise ValueError("pod must run as non-root")
    return (f"terminationGracePeriodSeconds {tgp} > preStop {pre} s + shutdown grace {grace_ms / 1000:g} s"
            f" (drain window {window_ms / 1000:g} s); probes on 8081; non-root")


def check_selectors():
    dep = the("Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        for _, d in k8s_objects():
            if d["kind"] != kind:
                continue
            sel = d["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            if not all(labels.get(k) == v for k, v in sel.items()):
                raise ValueError(f"{kind} {d['metadata']['name']} selector {sel} does not match the pods")
    sm = the("ServiceMonitor")
    sel = sm["spec"]["selector"]["matchLabels"]
    svcs = [d for _, d in k8s_objects() if d["kind"] == "Service"
            and all(d["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
    if not svcs:
        raise ValueError("ServiceMonitor selects no Service")
    port = sm["spec"]["endpoints"][0]["port"]
    if port not in [p["name"] for s in svcs for p in s["spec"]["ports"]]:
        raise ValueError(f"ServiceMonitor port {port!r} is not a port of the selected Service")
    hpa = the("HorizontalPodAutoscaler")
    if hpa["spec"]["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
        raise ValueError("HPA does not target the Deployment")
    return "Services, PDB, ServiceMonitor and HPA point at the pushgate pods"


def check_compose():
    p = DEPLOY / "docker-compose.yml"
    d = docs[p][0]
    services = d["services"]
    nodes = {k: v for k, v in services.items() if k.startswith("pushgate")}
    if len(nodes) < 2:
        raise ValueError("fewer than two pushgate nodes")
    ids = []
    for name, s in nodes.items():
        pushgate_env_ok(s.get("environment", {}), f"compose {name}")
        ids.append(s["environment"]["PUSHGATE_NODE_ID"])
    if len(set(ids)) != len(ids):
        raise ValueError(f"node ids not distinct: {ids}")
    for want in ("haproxy", "prometheus", "grafana", "redis"):
        if want not in services:
            raise ValueError(f"no {want} service")
    # The nodes are one cluster: broker=redis on the compose Redis, started after it;
    # that Redis keeps nothing on disk (the bus holds no state worth keeping).
    for name, s in nodes.items():
        env = s.get("environment", {})
        if env.get("PUSHGATE_BROKER") != "redis" or env.get("PUSHGATE_REDIS_URL") != "redis://redis:6379":
            raise ValueError(f"{name} is not joined: PUSHGATE_BROKER=redis and PUSHGATE_REDIS_URL=redis://redis:6379")
        if "redis" not in s.get("depends_on", []):
            raise ValueError(f"{name} does not depend on redis")
    redis = services["redis"]
    if not str(redis.get("image", "")).startswith("redis:7"):
        raise ValueError(f"redis image {redis.get('image')!r}: Redis 7 or later is needed (sharded pub/sub)")
    cmd = " ".join(redis.get("command", []) if isinstance(redis.get("command"), list) else [redis.get("command", "")])
    if "--appendonly no" not in cmd or "--save " not in cmd or redis.get("volumes"):
        raise ValueError(f"redis must run without persistence (--save '' --appendonly no, no volume): {cmd!r}")
    for name, s in services.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                if not (p.parent / src).exists():
                    raise ValueError(f"{name} mounts {src}, which does not exist")
        build = s.get("build")
        if build and not (p.parent / build["context"] / build["dockerfile"]).exists():
            raise ValueError(f"{name} builds from a missing Dockerfile")
    # The haproxy backend lists exactly the compose nodes; Prometheus scrapes them all.
    cfg = (DEPLOY / "haproxy/haproxy.cfg").read_text()
    servers = set(re.findall(r"^\s*server \S+ (\S+):8080", cfg, re.M))
    if servers != set(nodes):
        raise ValueError(f"haproxy servers {sorted(servers)} != compose nodes {sorted(nodes)}")
    prom = docs[DEPLOY / "prometheus/prometheus.yml"][0]
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "pushgate")
    targets = {t.split(":")[0] for sc in job["static_configs"] for t in sc["targets"]}
    if targets != set(nodes):
        raise ValueError(f"Prometheus targets {sorted(targets)} != compose nodes {sorted(nodes)}")
    return (f"{len(nodes)} nodes ({', '.join(ids)}) joined through redis (broker=redis, no persistence), "
            "mounts exist, haproxy and Prometheus list the same nodes")


def check_grafana():
    p = DEPLOY / "grafana/dashboards/pushgate.json"
    d = json.loads(p.read_text())
    panels = d["panels"]
    ids = [x["id"] for x in panels]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate panel ids")
    exprs = [t["expr"] for x in panels for t in x.get("targets", [])]
    if not exprs or any(not e.strip() for e in exprs):
        raise ValueError("a panel target without expr")
    known_metrics("\n".join(exprs), rel(p))
    prov = docs[DEPLOY / "grafana/provisioning/dashboards/pushgate.yml"][0]
    path = prov["providers"][0]["options"]["path"]
    compose = docs[DEPLOY / "docker-compose.yml"][0]
    mounts = compose["services"]["grafana"]["volumes"]
    if not any(m.split(":")[1] == path and m.startswith("./grafana/dashboards") for m in mounts):
        raise ValueError(f"the dashboards provider reads {path}, which compose does not mount")
    return f"{len(panels)} panels, {len(exprs)} queries, uid {d['uid']}; " + known_metrics("\n".join(exprs), "dashboard")


def check_alert_metrics():
    text = (DEPLOY / "prometheus/alerts.yml").read_text()
    return known_metrics(text, "alerts.yml")


def check_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    make = (ROOT / "Makefile").read_text()
    m = re.search(r"^build-lto:\n\t\$\(CARGO\) (.+)$", make, re.M)
    if not m:
        raise ValueError("no build-lto target in the Makefile")
    if f"cargo {m.group(1).strip()}" not in text:
        raise ValueError(f"the Dockerfile does not run `cargo {m.group(1).strip()}` (make build-lto)")
    if not re.search(r"^USER (?!0\b|root\b)\S+", text, re.M):
        raise ValueError("no non-root USER")
    if "HEALTHCHECK" not in text:
        raise ValueError("no HEALTHCHECK")
    for src in re.findall(r"^COPY (?!--from)(\S+) ", text, re.M):
        if src != "." and not (ROOT / src).exists():
            raise ValueError(f"COPY {src}: no such file")
    env = dict(re.findall(r"(PUSHGATE_[A-Z_]+)=(\S+)", text))
    pushgate_env_ok(env, "Dockerfile ENV")
    # Inside a container every listener must face the network (the defaults are
    # loopback): each documented *_addr setting needs a 0.0.0.0 ENV.
    for field in sorted(s for s in SETTINGS if s.endswith("_addr")):
        if not env.get(f"PUSHGATE_{field.upper()}", "").startswith("0.0.0.0:"):
            raise ValueError(f"ENV must set PUSHGATE_{field.upper()}=0.0.0.0:PORT (the default listens on loopback only)")
    return f"builds with `cargo {m.group(1).strip()}`, non-root, HEALTHCHECK, ENV {sorted(env)}"


check("Kubernetes objects have apiVersion/kind/name", check_k8s_shape)
check("Kubernetes Deployment: probes, drain arithmetic, env", check_deployment)
check("Kubernetes selectors and references", check_selectors)
check("docker-compose.yml: nodes joined through redis, mounts, haproxy/Prometheus targets", check_compose)
check("Grafana dashboard JSON", check_grafana)
check("alerts.yml metric names", check_alert_metrics)
check("Dockerfile", check_dockerfile)

failed = results.count(False)
print(f"structure: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
