#!/usr/bin/env python3
"""Checks a Grafana Alloy configuration without the `alloy` binary.

The `alloy` binary is not packaged for Debian, PyPI or npm, and Alloy's own syntax parser needs a
newer Go than Debian 12 ships, so this is our own reader of the Alloy syntax. It checks:

  * the file tokenizes and parses (blocks, attributes, expressions, object and array literals,
    function calls, comments, both string forms);
  * every top-level block is a component this file knows, with a label, used once per label;
  * each component's attributes and inner blocks are ones the component takes, and its
    required ones are there;
  * every reference (`loki.process.x.receiver`) names a component declared in the file and an
    export that component has; `forward_to` and `output` lists hold receivers / inputs;
  * only known standard-library functions are called.

It does not type-check values or run components: `alloy fmt` / `alloy run` remain the
authority where the binary can be installed.

    python3 scripts/check/alloy_lint.py monitoring/alloy/config.alloy
"""

import re
import sys

# --- the components this project uses: attributes, inner blocks, exports ----------------------
# Attributes: name -> required?  Blocks: name -> schema (same shape) or None (not checked inside).

RULE = {"attrs": {"source_labels": False, "separator": False, "regex": False, "modulus": False,
                  "target_label": False, "replacement": False, "action": False}, "blocks": {}}
OTEL_OUTPUT = {"attrs": {"traces": False, "metrics": False, "logs": False}, "blocks": {}}
TLS = {"attrs": {"insecure": False, "insecure_skip_verify": False, "ca_file": False,
                 "cert_file": False, "key_file": False, "server_name": False}, "blocks": {}}
ENDPOINT_HTTP = {"attrs": {"url": True, "name": False, "remote_timeout": False, "headers": False,
                           "bearer_token": False, "bearer_token_file": False,
                           "tenant_id": False},
                 "blocks": {"basic_auth": None, "tls_config": None, "queue_config": None,
                            "metadata_config": None, "oauth2": None, "authorization": None}}

COMPONENTS = {
    "discovery.kubernetes": {
        "attrs": {"role": True, "api_server": False, "kubeconfig_file": False},
        "blocks": {
            "selectors": {"attrs": {"role": True, "label": False, "field": False}, "blocks": {}},
            "namespaces": {"attrs": {"own_namespace": False, "names": False}, "blocks": {}},
            "attach_metadata": {"attrs": {"node": False}, "blocks": {}},
        },
        "exports": {"targets"},
    },
    "discovery.relabel": {
        "attrs": {"targets": True},
        "blocks": {"rule": RULE},
        "exports": {"output", "rules"},
    },
    "prometheus.scrape": {
        "attrs": {"targets": True, "forward_to": True, "job_name": False, "scrape_interval": False,
                  "scrape_timeout": False, "metrics_path": False, "scheme": False,
                  "honor_labels": False, "params": False, "bearer_token_file": False},
        "blocks": {"clustering": {"attrs": {"enabled": True}, "blocks": {}},
                   "tls_config": None, "basic_auth": None, "authorization": None},
        "exports": set(),
    },
    "prometheus.remote_write": {
        "attrs": {"external_labels": False},
        "blocks": {"endpoint": ENDPOINT_HTTP, "wal": None},
        "exports": {"receiver"},
    },
    "prometheus.relabel": {
        "attrs": {"forward_to": True, "max_cache_size": False},
        "blocks": {"rule": RULE},
        "exports": {"receiver", "rules"},
    },
    "local.file_match": {
        "attrs": {"path_targets": True, "sync_period": False},
        "blocks": {},
        "exports": {"targets"},
    },
    "loki.source.file": {
        "attrs": {"targets": True, "forward_to": True, "encoding": False,
                  "tail_from_end": False, "legacy_positions_file": False},
        "blocks": {"decompression": None, "file_watch": None},
        "exports": set(),
    },
    "loki.process": {
        "attrs": {"forward_to": True},
        "blocks": {
            "stage.cri": {"attrs": {"max_partial_lines": False, "max_partial_line_size": False,
                                    "max_partial_line_size_truncate": False}, "blocks": {}},
            "stage.drop": {"attrs": {"source": False, "separator": False, "expression": False,
                                     "value": False, "older_than": False, "longer_than": False,
                                     "drop_counter_reason": False}, "blocks": {}},
            "stage.json": {"attrs": {"expressions": True, "source": False,
                                     "drop_malformed": False}, "blocks": {}},
            "stage.timestamp": {"attrs": {"source": True, "format": True, "fallback_formats": False,
                                          "location": False, "action_on_failure": False},
                                "blocks": {}},
            "stage.labels": {"attrs": {"values": True}, "blocks": {}},
            "stage.structured_metadata": {"attrs": {"values": True}, "blocks": {}},
            "stage.static_labels": {"attrs": {"values": True}, "blocks": {}},
            "stage.label_drop": {"attrs": {"values": True}, "blocks": {}},
            "stage.match": None,
            "stage.regex": {"attrs": {"expression": True, "source": False}, "blocks": {}},
            "stage.output": {"attrs": {"source": True}, "blocks": {}},
        },
        "exports": {"receiver"},
    },
    "loki.write": {
        "attrs": {"external_labels": False, "max_streams": False},
        "blocks": {"endpoint": ENDPOINT_HTTP, "wal": None},
        "exports": {"receiver"},
    },
    "otelcol.receiver.otlp": {
        "attrs": {},
        "blocks": {
            "grpc": {"attrs": {"endpoint": False, "transport": False}, "blocks": {"tls": None}},
            "http": {"attrs": {"endpoint": False, "traces_url_path": False,
                               "metrics_url_path": False, "logs_url_path": False},
                     "blocks": {"tls": None, "cors": None}},
            "output": OTEL_OUTPUT,
        },
        "exports": set(),
    },
    "otelcol.processor.batch": {
        "attrs": {"timeout": False, "send_batch_size": False, "send_batch_max_size": False},
        "blocks": {"output": OTEL_OUTPUT},
        "exports": {"input"},
    },
    "otelcol.processor.k8sattributes": {
        "attrs": {"auth_type": False, "passthrough": False},
        "blocks": {"output": OTEL_OUTPUT, "extract": None, "filter": None,
                   "pod_association": None, "exclude": None},
        "exports": {"input"},
    },
    "otelcol.exporter.otlp": {
        "attrs": {"timeout": False},
        "blocks": {"client": {"attrs": {"endpoint": True, "compression": False,
                                        "headers": False, "auth": False},
                              "blocks": {"tls": TLS, "keepalive": None}},
                   "sending_queue": None, "retry_on_failure": None},
        "exports": {"input"},
    },
}

# Receivers a list attribute must hold, by attribute name.
WANTS = {"forward_to": {"receiver"}, "traces": {"input"}, "metrics": {"input"}, "logs": {"input"}}

STDLIB = {"sys.env", "env", "concat", "coalesce", "format", "join", "split", "replace",
          "to_lower", "to_upper", "trim", "trim_prefix", "trim_suffix", "trim_space",
          "encoding.from_json", "encoding.from_yaml", "constants.hostname", "file.path_join",
          "string.format", "string.join", "array.concat", "json_decode", "nonsensitive"}


# --- tokens ----------------------------------------------------------------------------------

TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+)
  | (?P<nl>\n)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[=<>!+\-*/%^.,\[\]{}():])
""", re.VERBOSE | re.DOTALL)


class AlloyError(Exception):
    pass


def tokenize(text):
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise AlloyError(f"line {line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "nl":
            out.append(("nl", "\n", line))
        elif kind in ("string", "raw", "number", "ident", "op"):
            out.append((kind, value, line))
        line += value.count("\n")
        pos = m.end()
    out.append(("eof", "", line))
    return out


# --- parser ----------------------------------------------------------------------------------

class Parser:
    def __init__(self, tokens):
        self.t = tokens
        self.i = 0

    def peek(self, skip_nl=False):
        j = self.i
        while skip_nl and self.t[j][0] == "nl":
            j += 1
        return self.t[j]

    def next(self):
        tok = self.t[self.i]
        self.i += 1
        return tok

    def skip_nl(self):
        while self.t[self.i][0] == "nl":
            self.i += 1

    def expect(self, value):
        tok = self.next()
        if tok[1] != value:
            raise AlloyError(f"line {tok[2]}: expected {value!r}, found {tok[1]!r}")
        return tok

    def body(self, closing):
        """Statements until `closing` ('}' or eof): attributes and blocks."""
        items = []
        while True:
            self.skip_nl()
            tok = self.peek()
            if (closing == "eof" and tok[0] == "eof") or tok[1] == closing:
                return items
            if tok[0] != "ident":
                raise AlloyError(f"line {tok[2]}: expected a name, found {tok[1]!r}")
            name = [self.next()[1]]
            while self.peek()[1] == ".":
                self.next()
                part = self.next()
                if part[0] != "ident":
                    raise AlloyError(f"line {part[2]}: bad block name after '.'")
                name.append(part[1])
            line = tok[2]
            nxt = self.peek()
            if nxt[1] == "=" and len(name) == 1:
                self.next()
                value = self.expr()
                end = self.peek()
                if end[0] not in ("nl", "eof") and end[1] != closing:
                    raise AlloyError(f"line {end[2]}: expected a new line after {name[0]} = ...")
                items.append(("attr", name[0], value, line))
            else:
                label = None
                if nxt[0] in ("string", "raw"):
                    label = self.next()[1][1:-1]
                self.expect("{")
                inner = self.body("}")
                self.expect("}")
                items.append(("block", ".".join(name), label, inner, line))

    # Expressions, loosest first.
    BINARY = [["||"], ["&&"], ["==", "!=", "<", "<=", ">", ">="], ["+", "-"], ["*", "/", "%"],
              ["^"]]

    def expr(self, level=0):
        if level == len(self.BINARY):
            return self.unary()
        left = self.expr(level + 1)
        while self.peek()[1] in self.BINARY[level] and self.peek()[0] == "op":
            op = self.next()[1]
            self.skip_nl()
            right = self.expr(level + 1)
            left = ("binary", op, left, right)
        return left

    def unary(self):
        if self.peek()[1] in ("!", "-") and self.peek()[0] == "op":
            op = self.next()[1]
            return ("unary", op, self.unary())
        return self.postfix(self.primary())

    def primary(self):
        tok = self.next()
        kind, value, line = tok
        if kind in ("string", "raw"):
            return ("string", value, line)
        if kind == "number":
            return ("number", value, line)
        if kind == "ident":
            if value in ("true", "false", "null"):
                return ("literal", value, line)
            return ("name", [value], line)
        if value == "(":
            self.skip_nl()
            inner = self.expr()
            self.skip_nl()
            self.expect(")")
            return inner
        if value == "[":
            return ("array", self.items("]", "an array", self.expr), line)
        if value == "{":
            return ("object", self.items("}", "an object", self.field), line)
        raise AlloyError(f"line {line}: unexpected {value!r} in an expression")

    def items(self, closing, what, item):
        """The elements of an array or object up to its closing bracket (consumed), each read
        by item()."""
        out = []
        while True:
            self.skip_nl()
            if self.peek()[1] == closing:
                self.next()
                return out
            out.append(item())
            self.after_item(closing, what)

    def field(self):
        """One `key = expression` of an object: (key, expression)."""
        key = self.next()
        if key[0] not in ("ident", "string"):
            raise AlloyError(f"line {key[2]}: bad object key {key[1]!r}")
        self.expect("=")
        return (key[1], self.expr())

    def after_item(self, closing, what):
        """After an element: a comma, or the closing bracket on the same line (as in Go, an
        element followed by a line break needs its comma)."""
        tok = self.peek()
        if tok[1] == ",":
            self.next()
            return
        if tok[1] == closing:
            return
        if tok[0] == "nl":
            after = self.peek(skip_nl=True)
            if after[1] == closing:
                raise AlloyError(f"line {tok[2]}: missing ',' before the line break in {what}")
        raise AlloyError(f"line {tok[2]}: expected ',' or {closing!r} in {what}")

    def postfix(self, node):
        while True:
            tok = self.peek()
            if tok[1] == "." and node[0] == "name":
                self.next()
                part = self.next()
                if part[0] != "ident":
                    raise AlloyError(f"line {part[2]}: expected a name after '.'")
                node = ("name", node[1] + [part[1]], node[2])
            elif tok[1] == "(":
                self.next()
                args = []
                while True:
                    self.skip_nl()
                    if self.peek()[1] == ")":
                        self.next()
                        break
                    args.append(self.expr())
                    self.skip_nl()
                    if self.peek()[1] == ",":
                        self.next()
                node = ("call", node, args, tok[2])
            elif tok[1] == "[":
                self.next()
                index = self.expr()
                self.expect("]")
                node = ("index", node, index, tok[2])
            else:
                return node


# --- checks ----------------------------------------------------------------------------------

def walk_names(node, out):
    """Collects ("name", parts, line) and calls from an expression."""
    kind = node[0]
    if kind == "name":
        out.append(("ref", node[1], node[2]))
    elif kind == "call":
        fn = node[1]
        if fn[0] == "name":
            out.append(("call", fn[1], node[3]))
        for a in node[2]:
            walk_names(a, out)
    elif kind == "binary":
        walk_names(node[2], out)
        walk_names(node[3], out)
    elif kind == "unary":
        walk_names(node[2], out)
    elif kind == "array":
        for a in node[1]:
            walk_names(a, out)
    elif kind == "object":
        for _, v in node[1]:
            walk_names(v, out)
    elif kind == "index":
        walk_names(node[1], out)
        walk_names(node[2], out)


def check(text):
    errors = []
    items = Parser(tokenize(text)).body("eof")
    declared = {}
    for item in items:
        if item[0] != "block":
            errors.append(f"line {item[3]}: top-level attribute {item[1]!r}")
            continue
        _, name, label, _, line = item
        if name not in COMPONENTS:
            errors.append(f"line {line}: unknown component {name!r}")
            continue
        if label is None:
            errors.append(f"line {line}: component {name} needs a label")
            continue
        if (name, label) in declared:
            errors.append(f"line {line}: {name} {label!r} declared twice")
        declared[(name, label)] = COMPONENTS[name]["exports"]

    def check_body(where, schema, body):
        seen = set()
        for item in body:
            if item[0] == "attr":
                _, attr, value, line = item
                if attr not in schema["attrs"]:
                    errors.append(f"line {line}: {where} takes no attribute {attr!r}")
                if attr in seen:
                    errors.append(f"line {line}: {where}: {attr} set twice")
                seen.add(attr)
                check_value(where, attr, value, line)
            else:
                _, block, label, inner, line = item
                if block not in schema["blocks"]:
                    errors.append(f"line {line}: {where} takes no block {block!r}")
                    continue
                if schema["blocks"][block] is not None:
                    check_body(f"{where} > {block}", schema["blocks"][block], inner)
        for attr, required in schema["attrs"].items():
            if required and attr not in seen:
                errors.append(f"{where}: required attribute {attr!r} is missing")

    def check_value(where, attr, value, line):
        names = []
        walk_names(value, names)
        for kind, parts, ln in names:
            dotted = ".".join(parts)
            if kind == "call":
                if dotted not in STDLIB:
                    errors.append(f"line {ln}: {where}: unknown function {dotted}()")
                continue
            resolved = False
            for n in range(len(parts) - 1, 0, -1):
                comp = ".".join(parts[:n])
                if comp in COMPONENTS:
                    resolved = True
                    rest = parts[n:]
                    if len(rest) != 2:
                        errors.append(f"line {ln}: {where}: {dotted} is not <component>.<label>"
                                      ".<export>")
                    elif (comp, rest[0]) not in declared:
                        errors.append(f"line {ln}: {where}: {comp} {rest[0]!r} is not declared")
                    elif rest[1] not in declared[(comp, rest[0])]:
                        errors.append(f"line {ln}: {where}: {comp} exports no {rest[1]!r}")
                    elif attr in WANTS and rest[1] not in WANTS[attr]:
                        errors.append(f"line {ln}: {where}: {attr} wants "
                                      f"{'/'.join(sorted(WANTS[attr]))}, got {dotted}")
                    break
            if not resolved:
                errors.append(f"line {ln}: {where}: {dotted} names no declared component")
        if attr in WANTS and value[0] != "array":
            errors.append(f"line {line}: {where}: {attr} must be a list")

    for item in items:
        if item[0] == "block" and item[1] in COMPONENTS and item[2] is not None:
            check_body(f"{item[1]} {item[2]!r}", COMPONENTS[item[1]], item[3])

    # Every component that exports something is used by another.
    refs = re.findall(r"\b([a-z_][a-z0-9_.]*)\.([a-z0-9_]+)\.(receiver|input|targets|output)\b",
                      "\n".join(line.split("//")[0] for line in text.splitlines()))
    used = {(c, label) for c, label, _ in refs}
    for (comp, label), exports in declared.items():
        if exports and (comp, label) not in used:
            errors.append(f"{comp} {label!r} exports {sorted(exports)} but nothing uses it")
    return items, declared, errors


def main(paths):
    failed = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                _, declared, errors = check(f.read())
        except AlloyError as e:
            errors, declared = [f"syntax: {e}"], {}
        if errors:
            failed += 1
            for e in errors:
                print(f"{path}: {e}", file=sys.stderr)
        else:
            print(f"{path}: {len(declared)} components, every reference resolves")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
