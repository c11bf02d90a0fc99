// Validates every object under the given directory targets against the upstream schemas:
// core kinds against Kubernetes' OpenAPI schema (kubernetes-models), Istio kinds against
// Istio's CRD schemas (@kubernetes-models/istio). A kind with no schema is a failure, so
// every kind dcm generates is covered. Usage: node check.mjs DIR...
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

function modulePath(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group.endsWith(".istio.io")) return `@kubernetes-models/istio/${group}/${version}`;
  return group === "" ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
}

function* files(dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (name.endsWith(".yaml") || name.endsWith(".yml")) yield path;
  }
}

const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  console.error("usage: node check.mjs DIR...");
  process.exit(2);
}
let checked = 0;
const failures = [];
for (const dir of dirs) {
  for (const path of files(dir)) {
    for (const doc of parseAllDocuments(readFileSync(path, "utf8"))) {
      const object = doc.toJS();
      if (!object) continue;
      const { apiVersion, kind } = object;
      let model;
      try {
        model = (await import(modulePath(apiVersion)))[kind];
      } catch {
        model = undefined;
      }
      if (!model) {
        failures.push(`${path}: no upstream schema for ${apiVersion} ${kind}`);
        continue;
      }
      try {
        new model(object).validate();
        checked++;
      } catch (e) {
        failures.push(`${path}: ${apiVersion} ${kind}: ${e.message}`);
      }
    }
  }
}
for (const f of failures) console.log(`invalid: ${f}`);
console.log(`${checked} objects valid, ${failures.length} invalid`);
process.exit(failures.length === 0 ? 0 : 1);
