// Validates every object under the given directory targets against the upstream schemas.
//
// A kind whose CustomResourceDefinition is in --crds DIR (the Istio and Sail Operator CRDs of
// the Istio release dcm targets: shared/schemas/istio-1.31, read where it lies, never copied)
// is checked against that CRD: its apiVersion must name a version the CRD serves, and the
// object must satisfy that version's openAPIV3Schema read as the API server reads a
// structural schema (`structural` below turns it into a JSON Schema for ajv). Other kinds
// keep the packaged schemas: core kinds Kubernetes' OpenAPI schema (kubernetes-models), other
// *.istio.io kinds (the legacy profile's install.istio.io IstioOperator) @kubernetes-models/istio.
// A kind with no schema is a failure, so every kind dcm generates is covered.
// Usage: node check.mjs --crds CRD_DIR DIR...
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import Ajv from "ajv";
import { parseAllDocuments } from "yaml";

// The keywords a CRD schema may use, beyond those `structural` handles itself: value
// validations copied as they are, and annotations that do not constrain a value. Any other
// keyword stops the tool, so that no constraint is dropped unnoticed.
const COPIED = [
  "enum", "required", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
  "multipleOf", "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
  "minProperties", "maxProperties",
];
const IGNORED = [
  "description", "default", "example", "title", "externalDocs",
  "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-preserve-unknown-fields",
];
// Formats are checked loosely, as the API server does: the numeric ones for range only;
// a format the API server does not know is dropped.
const FORMATS = {
  int32: { type: "number", validate: (n) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 },
  int64: { type: "number", validate: (n) => Number.isInteger(n) },
  float: true,
  double: true,
  byte: /^[A-Za-z0-9+/]*={0,2}$/,
  "date-time": /^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$/,
};
// The root's apiVersion, kind and metadata: the API server checks metadata itself, so it is
// checked loosely here (name, namespace, labels and annotations are strings).
const strings = { type: "object", additionalProperties: { type: "string" } };
const ROOT = {
  apiVersion: { type: "string" },
  kind: { type: "string" },
  metadata: {
    type: "object",
    required: ["name"],
    properties: { name: { type: "string" }, namespace: { type: "string" }, labels: strings, annotations: strings },
  },
};

// A CRD's openAPIV3Schema as a JSON Schema with the API server's structural semantics:
// an object's fields are those its `properties` name (others are unknown) unless
// `x-kubernetes-preserve-unknown-fields` keeps them or `additionalProperties` makes it a
// map; `nullable` adds null to the type; `x-kubernetes-int-or-string` is integer or string;
// `x-kubernetes-list-type: set` items are unique; a field with a `default` is never missing
// (the API server defaults before it validates). Inside allOf/anyOf/oneOf/not (which only
// hold value validations in a structural schema) no field is made unknown. CEL rules
// (`x-kubernetes-validations`) are not checked: `stats.cel` counts them.
function structural(s, stats, { root = false, junctor = false } = {}) {
  const out = {};
  for (const [key, value] of Object.entries(s)) {
    if (COPIED.includes(key)) out[key] = value;
    else if (key === "x-kubernetes-validations") stats.cel += value.length;
    else if (key === "x-kubernetes-list-type") value === "set" && (out.uniqueItems = true);
    else if (key === "format") FORMATS[value] !== undefined && (out.format = value);
    else if (key === "items") out.items = structural(value, stats, { junctor });
    else if (key === "not") out.not = structural(value, stats, { junctor: true });
    else if (["allOf", "anyOf", "oneOf"].includes(key))
      out[key] = value.map((b) => structural(b, stats, { junctor: true }));
    else if (key === "properties")
      out.properties = Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, structural(v, stats, { junctor })]),
      );
    else if (key === "additionalProperties")
      out.additionalProperties = typeof value === "object" ? structural(value, stats, { junctor }) : value;
    else if (!["type", "nullable", "x-kubernetes-int-or-string", ...IGNORED].includes(key))
      throw new Error(`unsupported schema keyword ${key}`);
  }
  let type = s["x-kubernetes-int-or-string"] ? ["integer", "string"] : s.type;
  if (type && s.nullable) {
    type = [type, "null"].flat();
    if (out.enum) out.enum = [...out.enum, null];
  }
  if (type) out.type = type;
  if (root) out.properties = { ...out.properties, ...ROOT };
  // The API server fills in defaults before it validates: a field with a default is never missing.
  if (out.required && s.properties)
    out.required = out.required.filter((k) => s.properties[k]?.default === undefined);
  const object = s.type === "object" || s.properties;
  if (object && !junctor && !s["x-kubernetes-preserve-unknown-fields"] && !("additionalProperties" in s))
    out.additionalProperties = false;
  return out;
}

// The CRDs in a directory, by "group/kind": each served version's schema, converted.
function loadCrds(dir, stats) {
  const crds = new Map();
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith(".yaml") && !name.endsWith(".yml")) continue;
    for (const doc of parseAllDocuments(readFileSync(join(dir, name), "utf8"))) {
      const crd = doc.toJS();
      if (crd?.kind !== "CustomResourceDefinition") continue;
      const { group, names, versions } = crd.spec;
      const served = new Map();
      for (const v of versions.filter((v) => v.served)) {
        try {
          served.set(v.name, structural(v.schema.openAPIV3Schema, stats, { root: true }));
        } catch (e) {
          throw new Error(`${name}: ${names.kind} ${v.name}: ${e.message}`);
        }
      }
      crds.set(`${group}/${names.kind}`, { served, validators: new Map() });
      stats.crds++;
    }
  }
  return crds;
}

// ajv with the loose formats; `verbose` keeps each failing schema, for oneOf's message.
const ajv = new Ajv({
  allErrors: true,
  verbose: true,
  allowUnionTypes: true,
  strictTypes: false,
  formats: FORMATS,
});

// A JSON pointer into an object as the field path a person reads: spec.http[0].route[0].weight.
function fieldPath(object, pointer) {
  let out = "";
  let node = object;
  for (const raw of pointer.split("/").slice(1)) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    if (Array.isArray(node)) out += `[${key}]`;
    else if (/^[A-Za-z_][\w-]*$/.test(key)) out += out ? `.${key}` : key;
    else out += `[${JSON.stringify(key)}]`;
    node = node?.[key];
  }
  return out || "(the object)";
}

// ajv's errors as "field.path: reason", the causes of a failed anyOf/oneOf branch left out
// (the anyOf/oneOf error itself says what is wrong).
function describe(object, errors) {
  const child = (e, key) => `${e.instancePath}/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`;
  const inBranch = /\/(anyOf|oneOf)\/\d+\/|\/not\//;
  const shown = errors.some((e) => !inBranch.test(e.schemaPath))
    ? errors.filter((e) => !inBranch.test(e.schemaPath))
    : errors;
  const lines = shown.map((e) => {
    const at = fieldPath(object, e.instancePath);
    switch (e.keyword) {
      case "additionalProperties":
        return `${fieldPath(object, child(e, e.params.additionalProperty))}: unknown field`;
      case "required":
        return `${fieldPath(object, child(e, e.params.missingProperty))}: required field missing`;
      case "type":
        return `${at}: must be ${[e.params.type].flat().join(" or ").replaceAll(",", " or ")}`;
      case "enum": {
        const allowed = e.params.allowedValues.map((v) => JSON.stringify(v));
        const list = allowed.length > 12 ? [...allowed.slice(0, 12), "…"] : allowed;
        return `${at}: must be one of ${list.join(", ")}`;
      }
      case "oneOf": {
        const fields = e.schema.flatMap((b) => b.required ?? []);
        if (e.params.passingSchemas && fields.length > 0)
          return `${at}: at most one of ${fields.join(", ")} may be set`;
        return `${at}: ${e.message}`;
      }
      default:
        return `${at}: ${e.message}`;
    }
  });
  const unique = [...new Set(lines)];
  return unique.length > 10 ? [...unique.slice(0, 10), `and ${unique.length - 10} more`] : unique;
}

// Checks an object against its CRD: an array of reasons, empty when it is valid.
function checkAgainstCrd(crd, version, kind, object) {
  const schema = crd.served.get(version);
  if (!schema) {
    return [`version ${version} is not served by the ${kind} CRD, which serves ${[...crd.served.keys()].join(", ")}`];
  }
  if (!crd.validators.has(version)) {
    try {
      crd.validators.set(version, ajv.compile(schema));
    } catch (e) {
      return [`cannot compile the ${kind} ${version} schema: ${e.message}`];
    }
  }
  const validate = crd.validators.get(version);
  return validate(object) ? [] : describe(object, validate.errors);
}

function modulePath(group, version) {
  if (group.endsWith(".istio.io")) return `@kubernetes-models/istio/${group}/${version}`;
  return group === "" ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
}

// Checks an object against the packaged schemas: reasons, or undefined when there is none.
async function checkAgainstPackage(group, version, kind, object) {
  let model;
  try {
    model = (await import(modulePath(group, version)))[kind];
  } catch {
    model = undefined;
  }
  if (!model) return undefined;
  try {
    new model(object).validate();
    return [];
  } catch (e) {
    return Array.isArray(e.errors) ? describe(object, e.errors) : [e.message];
  }
}

function* files(dir) {
  if (!statSync(dir).isDirectory()) return yield dir;
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (name.endsWith(".yaml") || name.endsWith(".yml")) yield path;
  }
}

function fail(message) {
  console.error(`schema-check: ${message}`);
  process.exit(2);
}

const args = process.argv.slice(2);
let crdDir;
const dirs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--crds") crdDir = args[++i];
  else if (args[i].startsWith("--crds=")) crdDir = args[i].slice("--crds=".length);
  else dirs.push(args[i]);
}
if (!crdDir || dirs.length === 0) fail("usage: node check.mjs --crds CRD_DIR DIR...");
if (!existsSync(crdDir) || !statSync(crdDir).isDirectory()) {
  fail(
    `the CRD directory ${crdDir} does not exist: it holds the Istio and Sail Operator CRDs ` +
      "that Istio objects are checked against (shared/schemas/istio-1.31, beside the checkout)",
  );
}
const stats = { crds: 0, cel: 0 };
let crds;
try {
  crds = loadCrds(crdDir, stats);
} catch (e) {
  fail(`cannot read the CRDs in ${crdDir}: ${e.message}`);
}
if (crds.size === 0) fail(`no CustomResourceDefinition in ${crdDir}`);
for (const dir of dirs) if (!existsSync(dir)) fail(`no directory ${dir}`);

let checked = 0;
const failures = [];
for (const dir of dirs) {
  for (const path of files(dir)) {
    for (const doc of parseAllDocuments(readFileSync(path, "utf8"))) {
      if (doc.errors.length > 0) {
        failures.push(`${path}: not YAML: ${doc.errors[0].message.split("\n")[0]}`);
        continue;
      }
      const object = doc.toJS();
      if (!object) continue;
      const { apiVersion, kind } = object;
      if (typeof apiVersion !== "string" || typeof kind !== "string") {
        failures.push(`${path}: no apiVersion and kind`);
        continue;
      }
      const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
      const crd = crds.get(`${group}/${kind}`);
      const reasons = crd
        ? checkAgainstCrd(crd, version, kind, object)
        : await checkAgainstPackage(group, version, kind, object);
      if (reasons === undefined) failures.push(`${path}: no upstream schema for ${apiVersion} ${kind}`);
      else if (reasons.length > 0) failures.push(`${path}: ${apiVersion} ${kind}: ${reasons.join("; ")}`);
      else checked++;
    }
  }
}
console.log(
  `note: ${stats.crds} CRDs from ${crdDir}; their ${stats.cel} CEL rules (x-kubernetes-validations) are not checked`,
);
for (const f of failures) console.log(`invalid: ${f}`);
console.log(`${checked} objects valid, ${failures.length} invalid`);
process.exit(failures.length === 0 ? 0 : 1);
