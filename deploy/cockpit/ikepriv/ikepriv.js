/* ikepriv's Cockpit page: three views over `ike` and `ikedb`, nothing else.
 *
 * Every read runs with superuser "try" (a user without administrative access sees ike's
 * own refusal), every change with superuser "require". No second path to the control
 * socket or the database: what the page shows and does is what `ike`/`ikedb` print and do,
 * so every check stays in the daemon and in ikedb. The definition form is built from
 * `ikedb --schema` (fields, defaults, ranges, proposal keywords) and writes TOML on stdin;
 * pre-shared keys go in and never come back (`ikedb -g --json` leaves them out,
 * `ikedb -p --keep-keys` keeps a stored key the form left empty).
 */
"use strict";

(function () {
    const POLL_MS = 3000;
    const HISTORY = 120; // chart points kept (6 minutes at POLL_MS)
    const LOG_LINES = 500;

    const state = {
        view: "tunnels",
        schema: null,
        defs: { phase1: [], phase2: [] },
        active: [], // rows of `ike cmd=list phase=1+ verbose json`
        daemonError: null, // {status, message} when `ike` could not list
        history: [], // {t, established, drops}
        lastDrops: null,
        busy: false,
    };

    /* --- small DOM helpers ---------------------------------------------------------------- */

    function h(tag, attrs, ...children) {
        const el = document.createElement(tag);
        for (const [k, v] of Object.entries(attrs || {})) {
            if (v === null || v === undefined || v === false) continue;
            if (k === "class") el.className = v;
            else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
            else if (k === "text") el.textContent = v;
            else el.setAttribute(k, v === true ? "" : v);
        }
        for (const c of children.flat()) {
            if (c === null || c === undefined || c === false) continue;
            el.append(c instanceof Node ? c : document.createTextNode(String(c)));
        }
        return el;
    }

    function $(id) {
        return document.getElementById(id);
    }

    function button(label, kind, onclick, extra) {
        return h("button", Object.assign({ class: "pf-c-button pf-m-" + kind, type: "button", onclick }, extra || {}), label);
    }

    function smallButton(label, kind, onclick, extra) {
        const b = button(label, kind, onclick, extra);
        b.classList.add("pf-m-small");
        return b;
    }

    function alertBox(kind, title, lines) {
        return h("div", { class: "pf-c-alert pf-m-inline pf-m-" + kind, role: kind === "danger" ? "alert" : "status" },
                 h("p", { class: "pf-c-alert__title" }, title),
                 lines && lines.length ? h("div", { class: "pf-c-alert__description" }, h("pre", { class: "ikp-pre" }, lines.join("\n"))) : null);
    }

    function notify(kind, title, lines) {
        const box = alertBox(kind, title, lines);
        const close = button("Dismiss", "link", () => box.remove(), { "aria-label": "Dismiss" });
        box.append(h("div", { class: "pf-c-alert__action" }, close));
        $("alerts").prepend(box);
        if (kind === "success") setTimeout(() => box.remove(), 5000);
    }

    /* --- running ike and ikedb ------------------------------------------------------------- */

    // The text a failed command printed (stderr), as the command-line user sees it.
    function failure(ex) {
        const text = (ex && (ex.message || ex.problem)) || String(ex);
        return text.trim();
    }

    function run(argv, options) {
        const opts = { superuser: options && options.change ? "require" : "try", err: "message" };
        const proc = cockpit.spawn(argv, opts);
        if (options && options.input !== undefined) proc.input(options.input);
        return proc;
    }

    /* --- modal dialogs ------------------------------------------------------------------- */

    function modal(title, body, actions, wide) {
        const root = $("modal-root");
        const box = h("div", { class: "pf-c-modal-box " + (wide ? "pf-m-md" : "pf-m-sm"), role: "dialog", "aria-modal": "true", "aria-labelledby": "modal-title" },
                      h("header", { class: "pf-c-modal-box__header" }, h("h1", { class: "pf-c-modal-box__title", id: "modal-title" }, title)),
                      h("div", { class: "pf-c-modal-box__body" }, body),
                      h("footer", { class: "pf-c-modal-box__footer" }, actions));
        const backdrop = h("div", { class: "pf-c-backdrop" }, h("div", { class: "pf-l-bullseye" }, box));
        root.replaceChildren(backdrop);
        const first = box.querySelector("input, select, textarea, button");
        if (first) first.focus();
        return () => root.replaceChildren();
    }

    // A confirmation like the command line's: what will run, and a button that runs it.
    function confirmRun(title, text, argv, label, done) {
        const errors = h("div");
        let close = null;
        const go = button(label, "danger", () => {
            go.disabled = true;
            run(argv, { change: true })
                .then(out => {
                    close();
                    notify("success", title, out.trim() ? out.trim().split("\n") : [argv.join(" ")]);
                    done();
                })
                .catch(ex => {
                    go.disabled = false;
                    errors.replaceChildren(alertBox("danger", "Failed", failure(ex).split("\n")));
                });
        }, { id: "confirm-run" });
        close = modal(title, [h("p", {}, text), h("p", {}, h("code", {}, argv.join(" "))), errors],
                      [go, button("Cancel", "link", () => close(), { id: "confirm-cancel" })]);
    }

    /* --- Tunnels -------------------------------------------------------------------------- */

    function identityText(id) {
        return id ? id.value : "";
    }

    function duration(s) {
        if (s === null || s === undefined) return "";
        const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
        return (hh ? hh + "h " : "") + (hh || mm ? mm + "m " : "") + ss + "s";
    }

    function hexSpi(v) {
        return v ? "0x" + v.toString(16).padStart(8, "0") : "";
    }

    function stateLabel(s) {
        const color = s === "established" ? "green" : s === "defined" ? "grey" : "orange";
        return h("span", { class: "pf-c-label pf-m-compact pf-m-" + color }, h("span", { class: "pf-c-label__content" }, s));
    }

    function pollTunnels() {
        return run(["ike", "cmd=list", "phase=1+", "verbose", "json"])
            .then(out => {
                state.active = JSON.parse(out);
                state.daemonError = null;
            })
            .catch(ex => {
                state.active = [];
                state.daemonError = { status: ex.exit_status, message: failure(ex) };
            });
    }

    function daemonDown() {
        const e = state.daemonError;
        const notRunning = e.status === 3;
        return h("div", { class: "pf-c-empty-state", id: "daemon-state" },
                 h("div", { class: "pf-c-empty-state__content" },
                   h("h2", { class: "pf-c-title pf-m-lg" }, notRunning ? "The IKE daemon is not running" : "Tunnels cannot be listed"),
                   h("div", { class: "pf-c-empty-state__body" },
                     h("pre", { class: "ikp-pre" }, e.message),
                     notRunning ? h("p", {}, "Start it with ", h("code", {}, "systemctl start ikeprivd"), "; this page updates by itself.") : null)));
    }

    function tunnelCells(row) {
        const p1 = row.phase === 1;
        return [
            h("td", { "data-label": "No." }, String(row.tunnel_id || row.number)),
            h("td", { "data-label": "Name" }, row.name),
            h("td", { "data-label": "Role" }, row.role === "i" ? "initiator" : row.role === "r" ? "responder" : ""),
            h("td", { "data-label": "State" }, stateLabel(row.state)),
            h("td", { "data-label": "Local" }, p1 ? row.local_addr : row.local_selector || "",
              p1 && identityText(row.local_id) !== row.local_addr ? h("div", { class: "ikp-muted" }, identityText(row.local_id)) : null),
            h("td", { "data-label": "Remote" }, p1 ? row.remote_addr || "" : row.remote_selector || "",
              p1 && identityText(row.remote_id) !== row.remote_addr ? h("div", { class: "ikp-muted" }, identityText(row.remote_id)) : null),
            h("td", { "data-label": "Algorithms", class: "ikp-algs" }, row.algorithms),
            h("td", { "data-label": "Remaining" }, row.state === "defined" ? "" : duration(row.remaining_seconds)),
            h("td", { "data-label": "SPIs, traffic", class: "ikp-small" }, p1 || !row.spi_in ? "" : [
                "in " + hexSpi(row.spi_in), h("br"), "out " + hexSpi(row.spi_out), h("br"), row.bytes + " B, " + row.packets + " packets"]),
        ];
    }

    function removeButton(row) {
        // an active tunnel is removed by its tunnel-manager number, not its definition's
        const what = "phase " + row.phase + " tunnel " + row.tunnel_id + " (" + row.name + ")";
        return smallButton("Remove", "secondary", () => confirmRun(
            "Remove " + what,
            row.phase === 1 ? "Deletes the ISAKMP SA and every phase 2 tunnel under it." : "Deletes this tunnel's IPsec SAs and policies.",
            ["ike", "cmd=remove", "phase=" + row.phase, "numlist=" + row.tunnel_id], "Remove", refreshAll),
        { "data-action": "remove", "data-phase": String(row.phase), "data-name": row.name });
    }

    function activateButton(phase, def) {
        return smallButton(phase === 1 ? "Activate" : "Activate phase 2", "primary", () => confirmRun(
            "Activate phase " + phase + " definition " + def.number + " (" + def.name + ")",
            phase === 1 ? "Starts the phase 1 negotiation, then the phase 2 definitions marked autostart." : "Starts this phase 2 (and its phase 1 first when that is not up).",
            ["ike", "cmd=activate", "phase=" + phase, "numlist=" + def.number], "Activate", refreshAll),
        { "data-action": "activate", "data-phase": String(phase), "data-name": def.name });
    }

    function renderTunnels() {
        const body = $("tunnels-body");
        $("tunnels-updated").textContent = "Updated " + new Date().toLocaleTimeString();
        if (state.daemonError) {
            body.replaceChildren(daemonDown());
            return;
        }
        const head = h("thead", {}, h("tr", {}, ["No.", "Name", "Role", "State", "Local", "Remote", "Algorithms", "Remaining", "SPIs, traffic", ""].map(t => h("th", { scope: "col" }, t))));
        const tbody = h("tbody");
        const p1rows = state.active.filter(r => r.phase === 1);
        const p2rows = state.active.filter(r => r.phase === 2);
        const shown = new Set();
        const addRow = (row, isChild, actions) => {
            tbody.append(h("tr", { class: isChild ? "ikp-child" : "ikp-parent", "data-phase": String(row.phase), "data-name": row.name, "data-state": row.state },
                           tunnelCells(row), h("td", { class: "ikp-actions" }, h("div", {}, actions))));
        };
        for (const d1 of state.defs.phase1) {
            const up = p1rows.filter(r => r.name === d1.name);
            const parents = up.length ? up : [{ phase: 1, number: d1.number, name: d1.name, state: "defined", local_addr: d1.local_addr, remote_addr: d1.remote_addr, local_id: { value: d1.local_id }, remote_id: { value: d1.remote_id }, algorithms: d1.proposals.join(", ") }];
            for (const p of parents) {
                addRow(p, false, up.length ? [removeButton(p), p.state !== "established" ? activateButton(1, d1) : null] : activateButton(1, d1));
                shown.add(p);
                for (const d2 of state.defs.phase2.filter(x => x.phase1 === d1.name)) {
                    const kids = p2rows.filter(r => r.name === d2.name && (!up.length || r.phase1_number === p.tunnel_id));
                    if (kids.length) {
                        for (const k of kids) { addRow(k, true, removeButton(k)); shown.add(k); }
                    } else {
                        addRow({ phase: 2, number: d2.number, name: d2.name, state: "defined", local_selector: d2.local_subnet || (d2.local_subnets || []).join(", "), remote_selector: d2.remote_subnet || (d2.remote_subnets || []).join(", "), algorithms: (d2.proposals || d2.ah_proposals || []).join(", ") }, true, activateButton(2, d2));
                    }
                }
            }
        }
        for (const r of state.active.filter(x => !shown.has(x))) addRow(r, r.phase === 2, removeButton(r)); // e.g. deleted definitions
        if (!tbody.children.length) {
            body.replaceChildren(h("div", { class: "pf-c-empty-state" }, h("div", { class: "pf-c-empty-state__content" },
                h("h2", { class: "pf-c-title pf-m-lg" }, "No tunnel definitions"),
                h("div", { class: "pf-c-empty-state__body" }, "Create one under Definitions, or import a TOML file."))));
            return;
        }
        body.replaceChildren(h("table", { class: "pf-c-table pf-m-compact pf-m-grid-lg", "aria-label": "Tunnels", id: "tunnels-table" }, head, tbody));
    }

    /* --- Definitions ---------------------------------------------------------------------- */

    function loadDefinitions() {
        return run(["ikedb", "-g", "--json"])
            .then(out => { state.defs = JSON.parse(out); state.defsError = null; })
            .catch(ex => {
                const msg = failure(ex);
                state.defs = { phase1: [], phase2: [] };
                state.defsError = /no such file|does not exist|not found/i.test(msg) ? null : msg; // no database yet: nothing defined
            });
    }

    function renderDefinitions() {
        const body = $("definitions-body");
        if (state.defsError) {
            body.replaceChildren(alertBox("danger", "ikedb -g failed", state.defsError.split("\n")));
            return;
        }
        const table = (kind, rows, cols) => h("table", { class: "pf-c-table pf-m-compact pf-m-grid-md", "aria-label": kind + " definitions", id: kind + "-table" },
            h("caption", {}, kind === "phase1" ? "Phase 1 (ISAKMP SA)" : "Phase 2 (IPsec SA)"),
            h("thead", {}, h("tr", {}, ["No.", "Name", ...cols.map(c => c[0]), ""].map(t => h("th", { scope: "col" }, t)))),
            h("tbody", {}, rows.map(d => h("tr", { "data-name": d.name },
                h("td", { "data-label": "No." }, String(d.number)),
                h("td", { "data-label": "Name" }, h("button", { class: "pf-c-button pf-m-link pf-m-inline", type: "button", onclick: () => showDefinition(kind, d) }, d.name)),
                cols.map(c => h("td", { "data-label": c[0] }, c[1](d))),
                h("td", { class: "ikp-actions" }, h("div", {},
                  smallButton("Edit", "secondary", () => openForm(kind, d), { "data-action": "edit" }),
                  smallButton("Delete", "danger", () => confirmRun("Delete " + kind + " '" + d.name + "'",
                      kind === "phase1" ? "Deletes the definition and all its phase 2 definitions (ikedb -d)." : "Deletes the definition (ikedb -d).",
                      ["ikedb", "-d", "-t", kind, "-n", d.name], "Delete", refreshAll), { "data-action": "delete" })))))));
        const list = v => (Array.isArray(v) ? v.join(", ") : v === undefined ? "" : String(v));
        body.replaceChildren(
            table("phase1", state.defs.phase1, [["Local", d => d.local_addr], ["Remote", d => d.remote_addr], ["Mode", d => d.mode], ["Auth", d => d.auth], ["Proposals", d => list(d.proposals)], ["Autostart", d => d.autostart ? "yes" : "no"]]),
            table("phase2", state.defs.phase2, [["Phase 1", d => d.phase1], ["Local", d => d.local_subnet || list(d.local_subnets)], ["Remote", d => d.remote_subnet || list(d.remote_subnets)], ["Proposals", d => list(d.proposals || d.ah_proposals)], ["Mode", d => d.mode], ["Autostart", d => d.autostart ? "yes" : "no"]]));
    }

    function showDefinition(kind, d) {
        const box = $("definition-detail");
        const items = Object.entries(d).filter(([k]) => k !== "psk_stored").map(([k, v]) =>
            h("div", { class: "pf-c-description-list__group" },
              h("dt", { class: "pf-c-description-list__term" }, k),
              h("dd", { class: "pf-c-description-list__description" }, Array.isArray(v) ? v.join(", ") : String(v))));
        if (d.psk_stored) items.push(h("div", { class: "pf-c-description-list__group" }, h("dt", { class: "pf-c-description-list__term" }, "pre-shared key"), h("dd", { class: "pf-c-description-list__description" }, "stored (never shown)")));
        box.replaceChildren(h("div", { class: "pf-c-card__header" }, h("div", { class: "pf-c-card__title" }, h("h2", { class: "pf-c-title pf-m-lg" }, kind + " '" + d.name + "'")),
                                h("div", { class: "pf-c-card__actions" }, button("Close", "link", () => { box.hidden = true; }))),
                            h("div", { class: "pf-c-card__body" }, h("dl", { class: "pf-c-description-list pf-m-horizontal pf-m-2-col-on-lg", id: "definition-list" }, items)));
        box.hidden = false;
    }

    // The basic fields come first; the rest sit in "More settings".
    const BASIC = {
        phase1: ["name", "local_addr", "remote_addr", "local_id", "remote_id", "mode", "auth", "psk", "psk_hex", "cert", "key", "ca", "crl", "proposals", "autostart"],
        phase2: ["name", "phase1", "local_subnet", "remote_subnet", "protocol", "local_port", "remote_port", "proposals", "ah_proposals", "mode", "autostart"],
    };
    const SIGNATURE_ONLY = ["cert", "key", "ca", "crl", "send_cert"];
    const PSK_ONLY = ["psk", "psk_hex"];

    function hint(f, d) {
        const bits = [];
        if (f.required) bits.push("required");
        if (f.min !== undefined) bits.push((f.zero_ok ? "0 or " : "") + f.min + ".." + f.max);
        if (f.default !== undefined) bits.push("default " + JSON.stringify(f.default));
        if (f.default_from) bits.push("default: " + f.default_from);
        if (f.kind === "secret") bits.push(d && d.psk_stored ? "a key is stored; leave empty to keep it" : "write-only: never shown again");
        if (f.kind === "paths" || f.kind === "subnets") bits.push("one per line");
        return bits.join("; ");
    }

    function randomHexKey() {
        const bytes = new Uint8Array(32);
        crypto.getRandomValues(bytes);
        return Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
    }

    // Pick lists for one proposal string: the algorithm keywords from ikedb --schema.
    function proposalEditor(f, values) {
        const kw = state.schema.keywords;
        const list = h("ul", { class: "ikp-proposals", id: "field-" + f.key + "-list" });
        const add = p => list.append(h("li", { "data-proposal": p }, h("code", {}, p), " ", button("Remove", "link", e => e.target.closest("li").remove(), { "aria-label": "Remove " + p })));
        (values || []).forEach(add);
        const select = (label, options, blank) => h("select", { class: "pf-c-form-control ikp-pick", "aria-label": label },
            blank ? h("option", { value: "" }, blank) : null, options.map(o => h("option", { value: o }, o)));
        let picks;
        if (f.proposal_kind === "ike") picks = [select("encryption", kw.ike_encryption), select("hash", kw.ike_hash), select("DH group", kw.dh_group)];
        else if (f.proposal_kind === "esp") picks = [select("encryption", kw.esp_encryption), select("integrity", kw.integrity, "no integrity (GCM)"), select("PFS group", kw.dh_group, "no PFS")];
        else picks = [select("integrity", kw.integrity), select("PFS group", kw.dh_group, "no PFS")];
        if (f.proposal_kind === "ike") { picks[1].value = "sha256"; picks[2].value = "modp2048"; }
        if (f.proposal_kind === "esp") {
            picks[1].value = "sha256";
            picks[0].addEventListener("change", () => { // GCM carries its own integrity
                if (kw.esp_aead.includes(picks[0].value)) picks[1].value = "";
                else if (!picks[1].value) picks[1].value = "sha256";
            });
        }
        const addButton = button("Add", "secondary", () => add(picks.map(p => p.value).filter(Boolean).join("-")), { id: "field-" + f.key + "-add" });
        const wrap = h("div", { class: "ikp-proposal-editor", id: "field-" + f.key, "data-kind": "proposals" }, list, h("div", { class: "ikp-picks" }, picks, addButton));
        wrap.value = () => Array.from(list.children, li => li.dataset.proposal);
        return wrap;
    }

    function inputFor(f, d) {
        const id = "field-" + f.key;
        const v = d ? d[f.key] : undefined;
        if (f.kind === "proposals") return proposalEditor(f, v);
        if (f.kind === "choice") {
            const sel = h("select", { class: "pf-c-form-control", id, name: f.key },
                          h("option", { value: "" }, f.default !== undefined ? "default (" + f.default + ")" : "(not set)"),
                          f.choices.map(c => h("option", { value: c }, c)));
            if (v !== undefined && v !== f.default) sel.value = String(v);
            return sel;
        }
        if (f.kind === "boolean") {
            const cb = h("input", { type: "checkbox", class: "pf-c-check__input", id, name: f.key });
            cb.checked = v !== undefined ? v : f.default;
            return cb;
        }
        if (f.kind === "paths" || f.kind === "subnets") {
            const ta = h("textarea", { class: "pf-c-form-control", id, name: f.key, rows: "2" });
            ta.value = Array.isArray(v) ? v.join("\n") : "";
            return ta;
        }
        const attrs = { class: "pf-c-form-control", id, name: f.key, type: "text", placeholder: f.default !== undefined ? String(f.default) : f.default_from || "" };
        if (f.kind === "integer") Object.assign(attrs, { type: "number", min: f.zero_ok ? 0 : f.min, max: f.max, inputmode: "numeric" });
        if (f.kind === "secret") Object.assign(attrs, { type: "password", autocomplete: "new-password", placeholder: d && d.psk_stored ? "(stored key kept)" : "" });
        const input = h("input", attrs);
        if (v !== undefined && f.kind !== "secret" && v !== f.default) input.value = String(v);
        return input;
    }

    function fieldValue(f, el) {
        if (f.kind === "proposals") { const v = el.value(); return v.length ? v : undefined; }
        if (f.kind === "boolean") return el.checked === f.default ? undefined : el.checked;
        const text = el.value.trim();
        if (!text) return undefined;
        if (f.kind === "integer") return /^-?\d+$/.test(text) ? Number(text) : text; // ikedb judges
        if (f.kind === "paths" || f.kind === "subnets") return text.split(/[\n,]+/).map(s => s.trim()).filter(Boolean);
        if (f.key === "protocol" && /^\d+$/.test(text)) return Number(text);
        return text;
    }

    function tomlValue(v) {
        if (Array.isArray(v)) return "[" + v.map(tomlValue).join(", ") + "]";
        if (typeof v === "number" || typeof v === "boolean") return String(v);
        return JSON.stringify(String(v)); // a JSON string is a valid TOML basic string
    }

    function toToml(kind, values) {
        return "[[" + kind + "]]\n" + Object.entries(values).map(([k, v]) => k + " = " + tomlValue(v)).join("\n") + "\n";
    }

    function openForm(kind, d) {
        const fields = state.schema.fields[kind];
        const groups = {};
        const controls = {};
        const makeGroup = f => {
            const control = inputFor(f, d);
            controls[f.key] = control;
            const label = h("label", { class: "pf-c-form__label", for: "field-" + f.key }, h("span", { class: "pf-c-form__label-text" }, f.key), f.required ? h("span", { class: "pf-c-form__label-required", "aria-hidden": "true" }, " *") : null);
            const helper = h("div", { class: "pf-c-form__helper-text", id: "help-" + f.key }, hint(f, d));
            const error = h("div", { class: "pf-c-form__helper-text pf-m-error", id: "error-" + f.key, role: "alert", hidden: true });
            let extra = null;
            if (f.key === "psk_hex") {
                extra = button("Generate a random key", "link", () => {
                    control.type = "text";
                    control.value = randomHexKey();
                    controls.psk.value = "";
                    helper.textContent = "32 random bytes: give the same key to the peer gateway now; it is not shown again after saving.";
                }, { id: "generate-key" });
            }
            const group = h("div", { class: "pf-c-form__group", "data-field": f.key },
                            h("div", { class: "pf-c-form__group-label" }, label),
                            h("div", { class: "pf-c-form__group-control" }, f.kind === "boolean" ? h("div", { class: "pf-c-check" }, control) : control, extra, helper, error));
            groups[f.key] = group;
            return group;
        };
        const basic = fields.filter(f => BASIC[kind].includes(f.key)).map(makeGroup);
        const more = fields.filter(f => !BASIC[kind].includes(f.key)).map(makeGroup);
        if (kind === "phase2" && controls.phase1 && !d && state.defs.phase1.length) controls.phase1.value = state.defs.phase1[0].name;
        const formAlert = h("div", { id: "form-errors" });
        const form = h("form", { class: "pf-c-form pf-m-horizontal ikp-form", id: "definition-form", novalidate: true, onsubmit: e => e.preventDefault() },
                       formAlert, basic, h("details", { class: "ikp-more" }, h("summary", {}, "More settings"), more));
        const authChanged = () => {
            if (!controls.auth) return;
            const sig = (controls.auth.value || "psk") !== "psk";
            SIGNATURE_ONLY.forEach(k => { if (groups[k]) groups[k].hidden = !sig; });
            PSK_ONLY.forEach(k => { if (groups[k]) groups[k].hidden = sig; });
        };
        if (controls.auth) { controls.auth.addEventListener("change", authChanged); authChanged(); }
        if (d) controls.name.readOnly = true; // renaming is delete + create: numbers stay stable

        const save = button("Save", "primary", () => {
            const values = {};
            for (const f of fields) {
                const v = fieldValue(f, controls[f.key]);
                if (v !== undefined && !(groups[f.key] && groups[f.key].hidden)) values[f.key] = v;
            }
            const argv = ["ikedb", "-p", "-", "--keep-keys"].concat(d ? ["-F"] : []);
            for (const el of form.querySelectorAll("[id^=error-]")) { el.hidden = true; el.textContent = ""; }
            for (const el of form.querySelectorAll(".pf-m-error-field")) el.classList.remove("pf-m-error-field");
            formAlert.replaceChildren();
            save.disabled = true;
            run(argv, { change: true, input: toToml(kind, values) })
                .then(out => {
                    close();
                    notify("success", (d ? "Saved " : "Created ") + kind + " '" + values.name + "'", out.trim().split("\n"));
                    refreshAll();
                })
                .catch(ex => {
                    save.disabled = false;
                    const rest = [];
                    for (const line of failure(ex).split("\n")) {
                        const m = line.match(/field '([^']+)': (.*)$/);
                        const target = m && $("error-" + m[1]);
                        if (target && !groups[m[1]].hidden) {
                            target.textContent = line.replace(/^ikedb: /, "");
                            target.hidden = false;
                            groups[m[1]].classList.add("pf-m-error-field");
                            if (groups[m[1]].closest("details")) groups[m[1]].closest("details").open = true;
                        } else {
                            rest.push(line);
                        }
                    }
                    if (rest.length) formAlert.replaceChildren(alertBox("danger", "ikedb refused the definition", rest));
                });
        }, { id: "form-save" });
        const close = modal((d ? "Edit " : "New ") + (kind === "phase1" ? "phase 1" : "phase 2") + " definition", form,
                            [save, button("Cancel", "link", () => close(), { id: "form-cancel" })], true);
    }

    function importFile(file) {
        file.text().then(text => {
            let close = null;
            const force = h("input", { type: "checkbox", class: "pf-c-check__input", id: "import-force" });
            const errors = h("div");
            const go = button("Import", "primary", () => {
                go.disabled = true;
                run(["ikedb", "-p", "-", "--keep-keys"].concat(force.checked ? ["-F"] : []), { change: true, input: text })
                    .then(out => { close(); notify("success", "Imported " + file.name, out.trim().split("\n")); refreshAll(); })
                    .catch(ex => { go.disabled = false; errors.replaceChildren(alertBox("danger", "ikedb refused the file", failure(ex).split("\n"))); });
            }, { id: "import-run" });
            close = modal("Import " + file.name,
                          [h("p", {}, "The whole file is checked by ikedb and stored in one transaction, or refused as a whole."),
                           h("div", { class: "pf-c-check" }, force, h("label", { class: "pf-c-check__label", for: "import-force" }, "Replace definitions of the same name (-F); a phase 1 without a key keeps its stored key")),
                           errors],
                          [go, button("Cancel", "link", () => close())]);
        });
    }

    function exportFile() {
        run(["ikedb", "-g", "--no-keys"])
            .then(out => {
                const a = h("a", { href: URL.createObjectURL(new Blob([out], { type: "text/plain" })), download: "ikepriv-definitions.toml" });
                document.body.append(a);
                a.click();
                a.remove();
            })
            .catch(ex => notify("danger", "ikedb -g failed", failure(ex).split("\n")));
    }

    /* --- Events --------------------------------------------------------------------------- */

    function pollStats() {
        return run(["ike", "cmd=list", "stats", "json"]).then(out => {
            const counters = JSON.parse(out);
            const drops = Object.entries(counters).filter(([k, v]) => typeof v === "number" && /(^|_)dropped_/.test(k)).reduce((s, [, v]) => s + v, 0);
            const established = state.active.filter(r => r.phase === 1 && r.state === "established").length;
            const delta = state.lastDrops === null ? 0 : Math.max(0, drops - state.lastDrops);
            state.lastDrops = drops;
            state.history.push({ t: Date.now(), established, drops: delta });
            if (state.history.length > HISTORY) state.history.shift();
            state.counters = counters;
        }).catch(() => { state.counters = null; });
    }

    function renderChart() {
        const W = 560, H = 160, P = 28;
        const pts = state.history;
        const max = Math.max(1, ...pts.map(p => Math.max(p.established, p.drops)));
        const span = Math.max(pts.length, 20); // the x axis grows with the history, up to HISTORY
        const x = i => P + (i * (W - 2 * P)) / (span - 1);
        const y = v => H - P - (v * (H - 2 * P)) / max;
        const line = key => pts.map((p, i) => (i ? "L" : "M") + x(i).toFixed(1) + " " + y(p[key]).toFixed(1)).join(" ");
        const svg = `<svg viewBox="0 0 ${W} ${H}" class="ikp-chart" role="img" aria-label="Established tunnels and drops over time">
            <line x1="${P}" y1="${H - P}" x2="${W - P}" y2="${H - P}" class="ikp-axis"/>
            <line x1="${P}" y1="${P}" x2="${P}" y2="${H - P}" class="ikp-axis"/>
            <text x="4" y="${P + 4}" class="ikp-tick">${max}</text><text x="12" y="${H - P + 4}" class="ikp-tick">0</text>
            <text x="${W - P}" y="${H - 8}" class="ikp-tick" text-anchor="end">now</text>
            <text x="${P}" y="${H - 8}" class="ikp-tick">${Math.round((span * POLL_MS) / 1000)} s ago</text>
            <path d="${line("established")}" class="ikp-line-est"/><path d="${line("drops")}" class="ikp-line-drop"/></svg>`;
        const chart = $("chart");
        chart.innerHTML = svg; // built from numbers only
        chart.append(h("div", { class: "ikp-legend" }, h("span", { class: "ikp-key-est" }, "established phase 1 tunnels"), h("span", { class: "ikp-key-drop" }, "packets dropped per " + POLL_MS / 1000 + " s")));
        const c = state.counters;
        if (!c) { $("counters").replaceChildren(state.daemonError ? daemonDown() : ""); return; }
        const rows = Object.entries(c).filter(([, v]) => typeof v === "number");
        rows.sort((a, b) => (b[1] !== 0) - (a[1] !== 0));
        $("counters").replaceChildren(h("h3", { class: "pf-c-title pf-m-md" }, "ike cmd=list stats"),
            h("dl", { class: "ikp-counters", id: "counter-list" }, rows.map(([k, v]) => h("div", { class: v ? "ikp-nonzero" : "" }, h("dt", {}, k), h("dd", {}, String(v))))));
    }

    function logSource() {
        return window.localStorage.getItem("ikepriv-log-source") || "journal";
    }

    // Lines of the selected phase 1 definition: its name, "definition N" or its tunnel numbers.
    function logFilter() {
        const name = $("log-tunnel").value;
        if (!name) return () => true;
        const d1 = state.defs.phase1.find(d => d.name === name);
        const esc = s => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        const names = [name, ...state.defs.phase2.filter(d => d.phase1 === name).map(d => d.name)];
        const tunnels = state.active.filter(r => r.phase === 1 && r.name === name).map(r => r.tunnel_id);
        const parts = names.map(n => "(^|[\\s(])" + esc(n) + "([\\s):,]|$)");
        if (d1) parts.push("phase 1 definition " + d1.number + "\\b");
        tunnels.forEach(t => parts.push("tunnel " + t + "\\b"));
        const re = new RegExp(parts.join("|"));
        return line => re.test(line);
    }

    // "TIME [HOST] ikeprivd[PID]: MESSAGE" (journal, syslog file) or "TIME ikeprivd[PID] LEVEL: MESSAGE"
    // (ikeprivd --log-stderr): the time without the host name, and the message.
    function splitLogLine(line) {
        const at = line.indexOf("ikeprivd[");
        const words = line.slice(0, at).trim().split(/\s+/);
        if (words.length > 1 && !/\d[:,]\d/.test(words[words.length - 1])) words.pop(); // the host
        const msg = line.slice(line.indexOf("]", at) + 1).replace(/^:?\s*/, "");
        return [words.join(" "), msg];
    }

    function loadLog() {
        const src = logSource();
        const body = $("log-body");
        const read = src === "journal"
            ? run(["journalctl", "--no-pager", "-q", "-o", "short-iso", "-t", "ikeprivd", "-n", "5000"])
            : run(["tail", "-n", "20000", src]);
        read.then(out => {
            const keep = logFilter();
            const lines = out.split("\n").filter(l => l.includes("ikeprivd[") && keep(l)).reverse().slice(0, LOG_LINES);
            if (!lines.length) {
                body.replaceChildren(h("p", { class: "ikp-muted", id: "log-empty" }, "No ikeprivd lines" + ($("log-tunnel").value ? " for this tunnel" : "") + " in " + src + "."));
                return;
            }
            body.replaceChildren(h("table", { class: "pf-c-table pf-m-compact", id: "log-table", "aria-label": "Daemon log, newest first" },
                h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), h("th", { scope: "col" }, "Message"))),
                h("tbody", {}, lines.map(l => {
                    const [when, msg] = splitLogLine(l);
                    const level = /^(WARNING|ERROR|CRITICAL)/.test(msg) || /refused|failed|cannot|unusable/.test(msg) ? "ikp-warn" : "";
                    return h("tr", { class: level }, h("td", { class: "ikp-when" }, when), h("td", {}, msg.replace(/^INFO: /, "")));
                }))));
        }).catch(ex => body.replaceChildren(alertBox("warning", "Cannot read " + src, [failure(ex), "Give the syslog file ikeprivd logs to (for example /var/log/syslog) as the source."])));
    }

    function renderEventsChoices() {
        const sel = $("log-tunnel");
        const current = sel.value;
        sel.replaceChildren(h("option", { value: "" }, "All tunnels"), ...state.defs.phase1.map(d => h("option", { value: d.name }, d.name)));
        sel.value = state.defs.phase1.some(d => d.name === current) ? current : "";
    }

    /* --- navigation and refresh ----------------------------------------------------------- */

    function show(view) {
        state.view = ["tunnels", "definitions", "events"].includes(view) ? view : "tunnels";
        for (const li of document.querySelectorAll("#tabs .pf-c-tabs__item")) {
            const on = li.dataset.view === state.view;
            li.classList.toggle("pf-m-current", on);
            li.querySelector("button").setAttribute("aria-selected", String(on));
        }
        for (const v of ["tunnels", "definitions", "events"]) $("view-" + v).hidden = v !== state.view;
        if (state.view === "events") loadLog();
    }

    function refreshAll() {
        if (state.busy) return Promise.resolve();
        state.busy = true;
        return Promise.all([loadDefinitions(), pollTunnels()])
            .then(() => pollStats())
            .then(() => {
                renderTunnels();
                renderDefinitions();
                renderEventsChoices();
                renderChart();
            })
            .finally(() => { state.busy = false; document.body.dataset.loaded = "1"; });
    }

    function start() {
        for (const li of document.querySelectorAll("#tabs .pf-c-tabs__item")) {
            li.querySelector("button").addEventListener("click", () => cockpit.location.go([li.dataset.view]));
        }
        cockpit.addEventListener("locationchanged", () => show(cockpit.location.path[0]));
        $("new-phase1").addEventListener("click", () => openForm("phase1", null));
        $("new-phase2").addEventListener("click", () => openForm("phase2", null));
        $("export").addEventListener("click", exportFile);
        $("import-file").addEventListener("change", e => { if (e.target.files[0]) importFile(e.target.files[0]); e.target.value = ""; });
        $("log-source").value = logSource() === "journal" ? "" : logSource();
        $("log-source").addEventListener("change", e => {
            const v = e.target.value.trim();
            if (v) window.localStorage.setItem("ikepriv-log-source", v);
            else window.localStorage.removeItem("ikepriv-log-source");
            loadLog();
        });
        $("log-tunnel").addEventListener("change", loadLog);
        $("log-refresh").addEventListener("click", loadLog);
        show(cockpit.location.path[0]);
        run(["ikedb", "--schema"])
            .then(out => { state.schema = JSON.parse(out); })
            .catch(ex => {
                notify("danger", "ikedb --schema failed: the definition form is not available", [failure(ex)]);
                $("new-phase1").disabled = $("new-phase2").disabled = true;
            })
            .finally(() => {
                refreshAll();
                window.setInterval(() => {
                    if ($("modal-root").children.length === 0) refreshAll(); // a form stays as typed
                }, POLL_MS);
            });
    }

    start();
}());
