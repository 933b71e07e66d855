// Runs `quire extract` over JSONSchemaBench schemas that `quire schema check`
// calls supported, at temperature 1.0 with several seeds, with a budget of 256
// tokens and with a budget just above the shortest completion, and validates
// every output twice: with quire's validator (`quire schema validate`) and with
// Ajv, an independent implementation. Exit 1 on any invalid output.
//
// usage: node check.mjs QUIRE SHARED [--per-split N] [--seeds 1,2,3] [--models m1,m2]
//                        [--splits Glaiveai2K,Github_easy] [--n 256] [--json OUT] [--list FILE]
//                        [--offset K]
// --offset K: start the even sample at file K of each stride (another sample
// of the same size; K = 0 is the default sample)
// --list FILE: only the schemas it names, one "Split/file.json" a line (every
// one of them, no sampling; --splits still selects the splits).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import Ajv from "ajv";
import Ajv2019 from "ajv/dist/2019.js";
import Ajv2020 from "ajv/dist/2020.js";
import AjvDraft04 from "ajv-draft-04";
import addFormats from "ajv-formats";

const [quire, shared, ...rest] = process.argv.slice(2);
const opt = { perSplit: 25, seeds: [1, 2, 3], n: 256, json: null,
  models: ["models/synthetic/syn-qwen2-Q8_0.gguf", "models/stories260K.gguf"],
  splits: ["Glaiveai2K", "Github_easy"], list: null };
for (let i = 0; i < rest.length; i += 2) {
  const k = rest[i], v = rest[i + 1];
  if (k === "--per-split") opt.perSplit = +v;
  else if (k === "--seeds") opt.seeds = v.split(",").map(Number);
  else if (k === "--models") opt.models = v.split(",");
  else if (k === "--splits") opt.splits = v.split(",");
  else if (k === "--n") opt.n = +v;
  else if (k === "--json") opt.json = v;
  else if (k === "--offset") opt.offset = +v;
  else if (k === "--list") opt.list = fs.readFileSync(v, "utf8").split("\n").map(l => l.trim()).filter(l => l && !l.startsWith("#"));
  else { console.error(`unknown option ${k}`); process.exit(2); }
}

function ajvFor(schema) {
  const s = String(schema.$schema || "");
  const o = { strict: false, allErrors: false, validateFormats: true, logger: false };
  let a;
  if (s.includes("draft-04")) a = new AjvDraft04(o);
  else if (s.includes("2020-12")) a = new Ajv2020(o);
  else if (s.includes("2019-09")) a = new Ajv2019(o);
  else {
    a = new Ajv(o);
    // draft-06 documents name their meta-schema; Ajv ships it, unregistered
    if (s.includes("draft-06")) a.addMetaSchema(createRequire(import.meta.url)("ajv/dist/refs/json-schema-draft-06.json"));
  }
  addFormats(a);
  return a;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "quire-ajv-"));
const doc = "Fill in one realistic example record.";
const report = { runs: 0, ours_ok: 0, ajv_ok: 0, ajv_skipped: 0, failures: [], splits: {} };

for (const split of opt.splits) {
  const dir = path.join(shared, "jsonschemabench", split);
  let files = fs.readdirSync(dir).filter(f => f.endsWith(".json")).sort();
  if (opt.list) files = files.filter(f => opt.list.includes(`${split}/${f}`));
  const step = opt.list ? 1 : Math.max(1, Math.floor(files.length / opt.perSplit));
  const st = { sampled: 0, supported: 0, runs: 0, ok: 0 };
  report.splits[split] = st;
  for (let fi = opt.list ? 0 : (opt.offset || 0) % step; fi < files.length && (opt.list || st.sampled < opt.perSplit); fi += step) {
    st.sampled++;
    const entry = JSON.parse(fs.readFileSync(path.join(dir, files[fi]), "utf8"));
    const sfile = path.join(tmp, "schema.json");
    fs.writeFileSync(sfile, JSON.stringify(entry.schema));
    if (spawnSync(quire, ["schema", "check", sfile]).status !== 0) continue;
    st.supported++;
    let validate = null;
    try { validate = ajvFor(entry.schema).compile(entry.schema); } catch (e) { validate = null; }
    for (const model of opt.models) {
      const mpath = path.join(shared, model);
      // the shortest completion for this model's vocabulary, in tokens
      const sh = spawnSync(quire, ["extract", "-m", mpath, "--schema", sfile, "-p", doc, "--shortest"], { encoding: "utf8" });
      const budgets = [opt.n];
      if (sh.status === 0) budgets.push(JSON.parse(sh.stdout).tokens + 1);
      for (const seed of opt.seeds) for (const n of budgets) {
        const r = spawnSync(quire, ["extract", "-m", mpath, "--schema", sfile, "-p", doc, "-n", String(n),
          "--temp", "1.0", "--seed", String(seed)], { encoding: "utf8", maxBuffer: 1 << 26 });
        report.runs++; st.runs++;
        const where = `${split}/${files[fi]} ${path.basename(model)} seed ${seed} -n ${n}`;
        if (r.status !== 0) {
          report.failures.push({ where, why: r.error ? `spawn: ${r.error.message}` : `exit ${r.status}: ${(r.stderr || "").trim()}` });
          continue;
        }
        const ofile = path.join(tmp, "out.json");
        fs.writeFileSync(ofile, r.stdout);
        const v = spawnSync(quire, ["schema", "validate", sfile, ofile], { encoding: "utf8" });
        if (v.status !== 0) { report.failures.push({ where, why: `quire validate: ${v.stderr.trim()}`, out: r.stdout }); continue; }
        report.ours_ok++;
        if (!validate) { report.ajv_skipped++; st.ok++; continue; }
        let inst;
        try { inst = JSON.parse(r.stdout); } catch (e) { report.failures.push({ where, why: `JSON.parse: ${e.message}` }); continue; }
        if (!validate(inst)) {
          report.failures.push({ where, why: `ajv: ${JSON.stringify(validate.errors).slice(0, 400)}`, out: r.stdout.slice(0, 400) });
          continue;
        }
        report.ajv_ok++; st.ok++;
      }
    }
  }
}
fs.rmSync(tmp, { recursive: true, force: true });
for (const [k, s] of Object.entries(report.splits))
  console.log(`${k}: ${s.supported}/${s.sampled} sampled schemas supported, ${s.ok}/${s.runs} runs valid`);
console.log(`runs ${report.runs}, valid by quire ${report.ours_ok}, by ajv ${report.ajv_ok} (+${report.ajv_skipped} schemas ajv cannot compile)`);
for (const f of report.failures.slice(0, 20)) console.log(`FAIL ${f.where}: ${f.why}`);
if (opt.json) fs.writeFileSync(opt.json, JSON.stringify(report, null, 1));
process.exit(report.failures.length ? 1 : 0);
