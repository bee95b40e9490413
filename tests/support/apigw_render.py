#!/usr/bin/env python3
"""API Gateway's request and response mapping for a non-proxy AWS integration, for the tests.

The Velocity engine is airspeed (PyPI airspeed-ext), the one LocalStack uses for API Gateway;
the variables follow LocalStack's emulation (localstack/services/apigateway/next_gen/execute_api/
template_mapping.py and handlers/integration_request.py, integration_response.py) with these
differences, each closer to AWS's documentation:
  - SelectionPattern is a Java regex matched against the WHOLE status string (re.fullmatch;
    LocalStack uses re.match, a prefix match), and more than one match is reported as an error
    rather than resolved by order, since AWS does not define an order;
  - $util.escapeJavaScript escapes like Apache Commons Lang (' becomes \\', non-ASCII becomes
    \\uXXXX), which is what the developer guide warns about, where LocalStack uses json.dumps;
  - a status override must be a declared method response, or the call fails loudly here;
  - strings behave as java.lang.String: length() and substring() count UTF-16 code units,
    indexOf() gives -1 when absent, replaceAll() takes Java's replacement syntax ($1, \$), and a
    regular expression using a construct whose meaning differs between java.util.regex and
    Python's re (\s, \w, \d, \b, \Z, \z, \p{..}, possessive quantifiers, inline flags other
    than (?s) and (?i)) fails the template instead of being silently misread; airspeed maps
    these methods onto Python's str with Python's semantics;
  - $util.urlDecode fails on a % not followed by two hex digits, as java.net.URLDecoder does
    (LocalStack's does not), and decodes bytes that are not UTF-8 to U+FFFD;
  - $input.params() holds the request's path and query string parameters, given in the job;
  - a request template's $context.requestOverride.header.<name> replaces that header of the
    integration request, static parameters included, and may be set once: a second assignment
    fails the call, as it is a 5xx on AWS (developer guide, "Override your API's request and
    response parameters and status codes": overrides apply "after standard API Gateway mappings
    have been applied", "Overrides are final", set more than once "API Gateway returns a 5XX
    response"); LocalStack merges the override over the mapped parameters the same way
    (handlers/integration_request.py) but lets a second assignment win.

Reads a job (or a list of jobs) as JSON on stdin and writes the result (or the list) on stdout.

  {"mode": "request", "integration": {...},
   "request": {"method", "headers", "body", "path": {...}, "query": {...}}}
    -> {"status": 200, "headers": {...}, "body": "<what the integration receives>"}
     | {"status": 415, "body": "{\"message\": \"Unsupported Media Type\"}"}

  {"mode": "response", "integration": {...}, "method_responses": ["200", ...],
   "request": {...}, "backend": {"status": 400, "body": "..."}}
    -> {"status": <to the client>, "body": "...", "selected": "<integration response status>"}

"integration" is the Integration property of an AWS::ApiGateway::Method, intrinsics resolved.
"""
import json
import re
import sys
import uuid

try:
    import airspeed
except ImportError:  # pragma: no cover - the message is for whoever runs the tests
    sys.exit("airspeed (PyPI airspeed-ext) is missing: run ./scripts/test.sh, which installs it")
from jsonpath_ng import parse as jsonpath_parse

DEFAULT_CONTENT_TYPE = "application/json"


def escape_javascript(value):
    """Commons Lang StringEscapeUtils.escapeJavaScript over UTF-16 code units, as Java sees them."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    out = []
    units = text.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(units), 2):
        ch = units[i] | (units[i + 1] << 8)
        if ch > 0x7F:
            out.append("\\u%04X" % ch)
        elif ch < 32:
            named = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
            out.append(named.get(ch, "\\u%04X" % ch))
        else:
            c = chr(ch)
            out.append({"'": "\\'", '"': '\\"', "\\": "\\\\", "/": "\\/"}.get(c, c))
    return "".join(out)


class Util:
    """$util (API Gateway developer guide, "$util variables")."""

    def escapeJavaScript(self, value):
        return escape_javascript(value)

    def urlEncode(self, value):
        from urllib.parse import quote_plus

        return quote_plus(value)

    def urlDecode(self, value):
        from urllib.parse import unquote_plus

        bad = re.search(r"%(?![0-9A-Fa-f]{2})", value)
        if bad:
            raise TemplateFailure(
                "java.lang.IllegalArgumentException: URLDecoder: illegal hex characters in escape "
                "(%%) pattern at %d" % bad.start()
            )
        return unquote_plus(value, encoding="utf-8", errors="replace")

    def parseJson(self, value):
        return json.loads(value)

    def base64Encode(self, value):
        import base64

        return base64.b64encode(value.encode()).decode()

    def base64Decode(self, value):
        import base64

        return base64.b64decode(value).decode()


class Input:
    """$input: the body, JSONPath over it, and the request parameters."""

    def __init__(self, body, params):
        self.body = body
        self._params = params

    def _document(self):
        try:
            return json.loads(self.body) if self.body else {}
        except json.JSONDecodeError as err:
            raise TemplateFailure("$input.path on a body that is not JSON: %s" % err)

    def path(self, expression):
        matches = [m.value for m in jsonpath_parse(expression).find(self._document())]
        if not matches:
            return None
        return matches[0] if len(matches) == 1 else matches

    def json(self, expression):
        return json.dumps(self.path(expression))

    def params(self, name=None):
        if name is None:
            return self._params
        for kind in ("path", "querystring", "header"):
            if name in self._params.get(kind, {}):
                return self._params[kind][name]
        return ""


class TemplateFailure(Exception):
    pass


class Overrides(dict):
    """$context.requestOverride.header and its kin: each name may be assigned once."""

    def __setitem__(self, key, value):
        if key in self:
            raise TemplateFailure("the override %s is set twice, a 5XX on API Gateway" % key)
        dict.__setitem__(self, key, value)


# Regular-expression constructs that java.util.regex and Python's re read differently (or that
# only one of them has); the templates must not use them, since this engine could not tell.
_UNPORTABLE = re.compile(r"\\[swdbSWDBzZpPhHRXGQE]|[*+?}]\+|\(\?[^:=!<si)]|\(\?[si]+[^si:)]|\(\?<[^=!]")


def _java_regex(pattern):
    if _UNPORTABLE.search(pattern):
        raise TemplateFailure("regular expression %r uses a construct Java and Python read differently" % pattern)
    try:
        return re.compile(pattern)
    except re.error as err:
        raise TemplateFailure("java.util.regex.PatternSyntaxException: %s in %r" % (err, pattern))


def _java_replacement(replacement):
    """Java's Matcher.replaceAll replacement syntax ($n a group, \\x a literal x) for re.sub."""
    out, i = [], 0
    while i < len(replacement):
        c = replacement[i]
        if c == "\\":
            if i + 1 == len(replacement):
                raise TemplateFailure("java.lang.IllegalArgumentException: character to be escaped is missing")
            out.append(replacement[i + 1].replace("\\", "\\\\"))
            i += 2
        elif c == "$":
            digits = re.match(r"[0-9]+", replacement[i + 1:])
            if not digits:
                raise TemplateFailure("java.lang.IllegalArgumentException: illegal group reference")
            out.append("\\g<%s>" % digits.group(0))
            i += 1 + len(digits.group(0))
        else:
            out.append("\\\\" if c == "\\" else c)
            i += 1
    return "".join(out)


def _units(text):
    return text.encode("utf-16-le", "surrogatepass")


def _from_units(units):
    return units.decode("utf-16-le", "surrogatepass")


def _substring(text, start, end=None):
    units = _units(text)
    count = len(units) // 2
    end = count if end is None else end
    if not 0 <= start <= end <= count:
        raise TemplateFailure("java.lang.StringIndexOutOfBoundsException: begin %s, end %s, length %s" % (start, end, count))
    return _from_units(units[2 * start:2 * end])


def _index_of(text, needle):
    at = text.find(needle)
    return -1 if at < 0 else len(_units(text[:at])) // 2


airspeed.operators.__additional_methods__[str].update(
    {
        "length": lambda self: len(_units(self)) // 2,
        "replaceAll": lambda self, pattern, repl: _java_regex(pattern).sub(_java_replacement(repl), self),
        "matches": lambda self, pattern: _java_regex(pattern).fullmatch(self) is not None,
        "substring": _substring,
        "indexOf": _index_of,
    }
)


def header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def context_for(request):
    return {
        "requestId": str(uuid.uuid4()),
        "extendedRequestId": "test",
        "httpMethod": request.get("method", "POST"),
        "resourcePath": "/{secret}",
        "stage": "prod",
        "apiId": "a1b2c3d4e5",
        "accountId": "123456789012",
        "identity": {"sourceIp": "203.0.113.10", "userAgent": header(request.get("headers", {}), "User-Agent") or ""},
        "requestOverride": {"header": Overrides(), "path": Overrides(), "querystring": Overrides()},
        "responseOverride": {"status": 0, "header": Overrides()},
    }


def render(template, body, request, context):
    params = {
        "path": dict(request.get("path", {})),
        "querystring": dict(request.get("query", {})),
        "header": dict(request.get("headers", {})),
    }
    namespace = {"input": Input(body, params), "util": Util(), "context": context}
    try:
        return airspeed.Template(template).merge(namespace)
    except TemplateFailure:
        raise
    except Exception as err:  # airspeed's own errors: the template does not compile or run
        raise TemplateFailure("%s: %s" % (type(err).__name__, err))


def media_type(content_type):
    """The media type API Gateway keys templates by: no parameters, lower case."""
    if not content_type:
        return DEFAULT_CONTENT_TYPE
    return content_type.split(";", 1)[0].strip().lower()


def integration_request(integration, request):
    templates = integration.get("RequestTemplates") or {}
    wanted = media_type(header(request.get("headers", {}), "Content-Type"))
    template = templates.get(wanted)
    if template is None:
        behavior = integration.get("PassthroughBehavior", "WHEN_NO_MATCH")
        if behavior == "NEVER" or (behavior == "WHEN_NO_TEMPLATES" and templates):
            return {"status": 415, "body": json.dumps({"message": "Unsupported Media Type"})}
        body = request.get("body", "")
    context = context_for(request)
    if template is not None:
        body = render(template, request.get("body", ""), request, context)
    headers = {}
    for key, source in (integration.get("RequestParameters") or {}).items():
        prefix = "integration.request.header."
        if not key.startswith(prefix):
            raise TemplateFailure("unsupported request parameter " + key)
        if not (source.startswith("'") and source.endswith("'")):
            raise TemplateFailure("only static values are emulated: %s = %s" % (key, source))
        headers[key[len(prefix):]] = source[1:-1]
    for name, value in context["requestOverride"]["header"].items():
        for old in [k for k in headers if k.lower() == name.lower()]:
            del headers[old]
        headers[name] = str(value)
    return {"status": 200, "headers": headers, "body": body}


def integration_response(integration, method_responses, request, backend):
    responses = integration.get("IntegrationResponses") or []
    selection = str(backend["status"])
    matched = [r for r in responses if r.get("SelectionPattern") and re.fullmatch(r["SelectionPattern"], selection)]
    if len(matched) > 1:
        raise TemplateFailure(
            "status %s matches the SelectionPattern of %s" % (selection, [r["StatusCode"] for r in matched])
        )
    if not matched:
        matched = [r for r in responses if not r.get("SelectionPattern")]
        if len(matched) > 1:
            raise TemplateFailure("more than one default integration response")
        if not matched:
            return {"status": 500, "body": json.dumps({"message": "Internal server error"}), "selected": None}
    chosen = matched[0]
    templates = chosen.get("ResponseTemplates") or {}
    accept = header(request.get("headers", {}), "Accept")
    template = templates.get(accept) or templates.get(DEFAULT_CONTENT_TYPE)
    if template is None and templates:
        template = next(iter(templates.values()))
    context = context_for(request)
    body = backend["body"] if template is None else render(template, backend["body"], request, context)
    status = int(chosen["StatusCode"])
    override = context["responseOverride"]["status"]
    if isinstance(override, int) and 100 <= override < 600:
        status = override
    if str(status) not in method_responses:
        raise TemplateFailure("status %s is not a method response (%s)" % (status, method_responses))
    return {"status": status, "body": body, "selected": chosen["StatusCode"]}


def run(job):
    try:
        if job["mode"] == "request":
            return integration_request(job["integration"], job["request"])
        return integration_response(job["integration"], job["method_responses"], job.get("request", {}), job["backend"])
    except TemplateFailure as err:
        return {"error": str(err)}


def main():
    jobs = json.load(sys.stdin)
    json.dump([run(job) for job in jobs] if isinstance(jobs, list) else run(jobs), sys.stdout)


if __name__ == "__main__":
    main()
