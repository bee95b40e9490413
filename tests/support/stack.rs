//! The CloudFormation template read the way CloudFormation reads it, for tests that need to know
//! what a stack with given parameters would contain.
//!
//! cfn-lint's own decoder turns the YAML (short-form tags included) into JSON; `Stack` then
//! evaluates what the template uses: parameters with their defaults, pseudo parameters,
//! conditions, `Fn::If` with `AWS::NoValue`, `Fn::Sub`, `Fn::FindInMap`, `Fn::Join`, and the
//! rule functions. A resource's `Ref` and `GetAtt` stand for its physical id, which a test may
//! give (the bucket moto created) or which reads `<Name>` / `<Name.Attr>`. Anything else panics,
//! so a template using a function this does not know fails loudly instead of being misread.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value, json};

pub const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/cloudformation/backlog-mirror.yaml"
);

/// buildspec.yml, which the template embeds as the project's BuildSpec, parsed by PyYAML.
pub fn buildspec() -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            concat!(env!("CARGO_MANIFEST_DIR"), "/buildspec.yml"),
        ])
        .output()
        .expect("python3 with PyYAML (installed with cfn-lint by ./scripts/test.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("buildspec as JSON")
}

/// The contract's name for the deployment whose logical id the deploy command renders.
pub const DEPLOYMENT: &str = "WebhookDeployment";

/// Values every stack needs (the parameters without defaults), valid for their patterns.
pub const REQUIRED: &[(&str, &str)] = &[
    ("BacklogSpaceKey", "example-space"),
    ("CodeCommitRepositoryPrefix", "backlog-"),
    (
        "BacklogHostKeyFingerprint",
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ),
    (
        "MirrorListSha256",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ),
    (
        "WebhookSecret",
        "0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
    (
        "BinarySha256",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ),
];

/// The template file as JSON, through cfn-lint's decoder.
pub fn load(path: &Path) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom cfnlint.decode import decode\nt, errors = decode(sys.argv[1])\nassert not errors, errors\nprint(json.dumps(t, default=str))",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("python3 is missing ({e}): run ./scripts/test.sh"));
    assert!(
        out.status.success(),
        "cannot decode {} (cfn-lint missing? run ./scripts/test.sh): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("template as JSON")
}

/// The committed template as JSON.
pub fn template() -> Value {
    load(Path::new(TEMPLATE))
}

/// The deploy command's rendering (STACK-CONTRACT.md): every whole-word `WebhookDeployment`
/// becomes `WebhookDeployment<H>`, H the first 12 hex digits of SHA-256 over the template bytes
/// and the values of WebhookSecret, AllowedSourceIps and ProjectName. The exact byte layout of
/// the hash input is the deploy command's; this one follows the same rule.
pub fn render(text: &str, secret: &str, allowed_ips: &str, project: &str) -> String {
    let mut input = text.as_bytes().to_vec();
    for (name, value) in [
        ("WebhookSecret", secret),
        ("AllowedSourceIps", allowed_ips),
        ("ProjectName", project),
    ] {
        input.extend_from_slice(format!("\n{name}={value}").as_bytes());
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&input);
    let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let mut rendered = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(at) = rest.find(DEPLOYMENT) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + DEPLOYMENT.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        rendered.push_str(&rest[..at + DEPLOYMENT.len()]);
        if !word(before) && !word(after) {
            rendered.push_str(&hash);
        }
        rest = &rest[at + DEPLOYMENT.len()..];
    }
    rendered.push_str(rest);
    rendered
}

/// A stack: the template with parameter values, evaluated.
pub struct Stack<'a> {
    pub t: &'a Value,
    params: BTreeMap<String, Value>,
    physical: BTreeMap<String, String>,
    pub region: String,
}

impl<'a> Stack<'a> {
    /// Defaults, then `REQUIRED`, then `values`. A CommaDelimitedList takes a comma-separated
    /// string.
    pub fn new(t: &'a Value, values: &[(&str, &str)]) -> Stack<'a> {
        let mut params = BTreeMap::new();
        let declared = t["Parameters"].as_object().expect("Parameters");
        let mut set = |name: &str, raw: &Value| {
            let decl = declared
                .get(name)
                .unwrap_or_else(|| panic!("no parameter {name}"));
            let text = match raw {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let value = if decl["Type"] == "CommaDelimitedList" {
                Value::Array(text.split(',').map(|s| json!(s.trim())).collect())
            } else {
                Value::String(text)
            };
            params.insert(name.to_string(), value);
        };
        for (name, decl) in declared {
            if let Some(default) = decl.get("Default") {
                set(name, default);
            }
        }
        for (name, value) in REQUIRED.iter().chain(values) {
            set(name, &json!(value));
        }
        Stack {
            t,
            params,
            physical: BTreeMap::new(),
            region: "ap-northeast-1".to_string(),
        }
    }

    /// The physical id (`Ref`) of a resource, e.g. the bucket name moto made.
    pub fn with_physical(mut self, resource: &str, id: &str) -> Self {
        self.physical.insert(resource.to_string(), id.to_string());
        self
    }

    pub fn in_region(mut self, region: &str) -> Self {
        self.region = region.to_string();
        self
    }

    pub fn param(&self, name: &str) -> &Value {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("parameter {name} has no value"))
    }

    fn pseudo(&self, name: &str) -> Option<Value> {
        Some(json!(match name {
            "AWS::Region" => self.region.as_str(),
            "AWS::AccountId" => "123456789012",
            "AWS::Partition" => "aws",
            "AWS::URLSuffix" => "amazonaws.com",
            "AWS::StackName" => "backlog-mirror",
            "AWS::StackId" =>
                "arn:aws:cloudformation:ap-northeast-1:123456789012:stack/backlog-mirror/1",
            _ => return None,
        }))
    }

    fn reference(&self, name: &str) -> Value {
        if let Some(v) = self.params.get(name) {
            return v.clone();
        }
        if let Some(v) = self.pseudo(name) {
            return v;
        }
        assert!(
            self.t["Resources"].get(name).is_some(),
            "Ref to unknown {name}"
        );
        json!(
            self.physical
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("<{name}>"))
        )
    }

    pub fn condition(&self, name: &str) -> bool {
        let expr = self.t["Conditions"]
            .get(name)
            .unwrap_or_else(|| panic!("no condition {name}"));
        self.truth(expr)
    }

    fn truth(&self, expr: &Value) -> bool {
        if let Some(name) = expr.get("Condition").and_then(Value::as_str) {
            return self.condition(name);
        }
        match self.eval(expr) {
            Some(Value::Bool(b)) => b,
            other => panic!("not a condition: {expr} -> {other:?}"),
        }
    }

    /// Evaluate intrinsics; `None` is `AWS::NoValue`.
    pub fn eval(&self, v: &Value) -> Option<Value> {
        match v {
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|i| self.eval(i)).collect(),
            )),
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().expect("one key");
                match key.as_str() {
                    "Ref" if arg == "AWS::NoValue" => None,
                    "Ref" => Some(self.reference(arg.as_str().expect("Ref name"))),
                    "Fn::GetAtt" => {
                        let parts: Vec<String> = match arg {
                            Value::String(s) => s.splitn(2, '.').map(String::from).collect(),
                            Value::Array(a) => {
                                a.iter().map(|x| x.as_str().unwrap().to_string()).collect()
                            }
                            _ => panic!("GetAtt {arg}"),
                        };
                        assert!(
                            self.t["Resources"].get(&parts[0]).is_some(),
                            "GetAtt of unknown {}",
                            parts[0]
                        );
                        Some(json!(format!("<{}.{}>", parts[0], parts[1])))
                    }
                    "Fn::If" => {
                        let branch = if self.truth(&json!({"Condition": arg[0]})) {
                            &arg[1]
                        } else {
                            &arg[2]
                        };
                        self.eval(branch)
                    }
                    "Fn::Equals" => Some(json!(self.eval(&arg[0]) == self.eval(&arg[1]))),
                    "Fn::Not" => Some(json!(!self.truth(&arg[0]))),
                    "Fn::And" => Some(json!(arg.as_array().unwrap().iter().all(|c| self.truth(c)))),
                    "Fn::Or" => Some(json!(arg.as_array().unwrap().iter().any(|c| self.truth(c)))),
                    "Fn::Contains" => {
                        let list = self.eval(&arg[0]).expect("Contains list");
                        let item = self.eval(&arg[1]).expect("Contains item");
                        Some(json!(list.as_array().expect("list").contains(&item)))
                    }
                    "Fn::FindInMap" => {
                        let keys: Vec<String> = arg
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|k| self.eval(k).unwrap().as_str().unwrap().to_string())
                            .collect();
                        let found = &self.t["Mappings"][&keys[0]][&keys[1]][&keys[2]];
                        assert!(!found.is_null(), "FindInMap {keys:?} finds nothing");
                        Some(found.clone())
                    }
                    "Fn::Join" => {
                        let sep = arg[0].as_str().unwrap();
                        let list = self.eval(&arg[1]).expect("Join list");
                        let parts: Vec<String> = list
                            .as_array()
                            .expect("Join of a list")
                            .iter()
                            .map(|p| p.as_str().expect("string").to_string())
                            .collect();
                        Some(json!(parts.join(sep)))
                    }
                    "Fn::Sub" => Some(json!(self.sub(arg))),
                    "Condition" if arg.is_string() => {
                        Some(json!(self.condition(arg.as_str().unwrap())))
                    }
                    k if k.starts_with("Fn::") => panic!("this test does not evaluate {k}"),
                    _ => Some(Value::Object(self.eval_object(map))),
                }
            }
            Value::Object(map) => Some(Value::Object(self.eval_object(map))),
            other => Some(other.clone()),
        }
    }

    fn eval_object(&self, map: &Map<String, Value>) -> Map<String, Value> {
        map.iter()
            .filter_map(|(k, v)| self.eval(v).map(|v| (k.clone(), v)))
            .collect()
    }

    fn sub(&self, arg: &Value) -> String {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), Map::new()),
            Value::Array(a) => (
                a[0].as_str().expect("Sub string"),
                self.eval(&a[1])
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default(),
            ),
            _ => panic!("Sub {arg}"),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closing }") + start;
            let name = &rest[start + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(v) = vars.get(name) {
                out.push_str(v.as_str().expect("string variable"));
            } else if let Some((res, attr)) = name.split_once('.') {
                let v = self
                    .eval(&json!({"Fn::GetAtt": [res, attr]}))
                    .expect("GetAtt");
                out.push_str(v.as_str().unwrap());
            } else {
                let v = self.reference(name);
                out.push_str(v.as_str().unwrap_or_else(|| panic!("${{{name}}} is {v}")));
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Does the resource exist in this stack?
    pub fn exists(&self, name: &str) -> bool {
        let r = self.t["Resources"]
            .get(name)
            .unwrap_or_else(|| panic!("no resource {name}"));
        match r.get("Condition").and_then(Value::as_str) {
            Some(c) => self.condition(c),
            None => true,
        }
    }

    /// The evaluated Properties of a resource that exists.
    pub fn properties(&self, name: &str) -> Value {
        assert!(self.exists(name), "{name} does not exist in this stack");
        self.eval(&self.t["Resources"][name]["Properties"])
            .unwrap_or(Value::Null)
    }

    /// The statements of every inline policy of an IAM role.
    pub fn statements(&self, role: &str) -> Vec<Value> {
        self.properties(role)["Policies"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().unwrap().clone())
            .collect()
    }

    /// Resource types this stack creates.
    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.t["Resources"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| self.exists(name))
            .map(|(_, r)| r["Type"].as_str().unwrap().to_string())
            .collect();
        types.sort();
        types.dedup();
        types
    }

    /// The AssertDescription of every rule assertion these parameters break.
    pub fn rule_failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for rule in self.t["Rules"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|r| r.1)
        {
            if let Some(cond) = rule.get("RuleCondition")
                && !self.truth(cond)
            {
                continue;
            }
            for a in rule["Assertions"].as_array().unwrap() {
                if !self.truth(&a["Assert"]) {
                    failures.push(a["AssertDescription"].as_str().unwrap().to_string());
                }
            }
        }
        failures
    }

    /// The CodeBuild project's environment variables, name -> value.
    pub fn build_env(&self) -> BTreeMap<String, String> {
        self.properties("MirrorProject")["Environment"]["EnvironmentVariables"]
            .as_array()
            .expect("EnvironmentVariables")
            .iter()
            .map(|v| {
                assert!(
                    v.get("Type").is_none() || v["Type"] == "PLAINTEXT",
                    "{v}: only plain variables are expected"
                );
                (
                    v["Name"].as_str().unwrap().to_string(),
                    v["Value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}
