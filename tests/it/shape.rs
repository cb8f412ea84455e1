//! The code's shape, checked on the crate's own sources: imports point one way along
//! the layers `src/lib.rs` documents, sibling files do not import each other, and no
//! file or function outgrows what a reader takes in at once (STYLE.md).
//!
//! The checks read `src/` as text. Comments and the insides of string and char
//! literals are blanked out first, so only code counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file over this many lines is a sign to split it.
const MAX_FILE_LINES: usize = 800;
/// A function over this many lines, from `fn` to its closing brace, is a sign to split it.
const MAX_FN_LINES: usize = 100;
/// The binary's modules: they use the library through `quern::`, as any embedder does.
const BINARY_MODULES: [&str; 2] = ["cli", "huge_pages"];

#[test]
fn imports_point_one_way() {
    let src = Source::read();
    let layers = match layers(&src.lib_rs) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let problems = layer_violations(&src, &layers);
    assert!(
        problems.is_empty(),
        "{} import(s) against the layer order {} (src/lib.rs):\n{}",
        problems.len(),
        layers.join(" → "),
        problems.join("\n")
    );
}

#[test]
fn sibling_files_do_not_import_each_other() {
    let problems = sibling_loops(&Source::read());
    assert!(
        problems.is_empty(),
        "{} pair(s) of sibling modules import each other; move what both need into one of them, or a third:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn files_stay_under_the_size_limit() {
    let src = Source::read();
    let problems: Vec<String> = src
        .files
        .iter()
        .filter(|f| f.lines > MAX_FILE_LINES)
        .map(|f| format!("{}: {} lines", f.shown, f.lines))
        .collect();
    assert!(
        problems.is_empty(),
        "{} file(s) over {MAX_FILE_LINES} lines:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn functions_stay_under_the_size_limit() {
    let src = Source::read();
    let mut problems = Vec::new();
    for file in &src.files {
        if src.test_files.contains(&file.path) {
            continue;
        }
        let tests = test_module_spans(&file.code);
        for f in functions(&file.code) {
            if f.lines > MAX_FN_LINES && !tests.iter().any(|s| s.contains(&f.at)) {
                problems.push(format!(
                    "{}:{}: fn {}: {} lines",
                    file.shown, f.line, f.name, f.lines
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} function(s) over {MAX_FN_LINES} lines (tests exempt):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// Reading the sources

struct File {
    path: PathBuf,
    /// The path as shown in messages, e.g. `src/models/trees.rs`.
    shown: String,
    /// The module path, e.g. `["models", "trees"]`; empty for lib.rs and main.rs.
    module: Vec<String>,
    lines: usize,
    code: Vec<char>,
}

struct Source {
    lib_rs: String,
    files: Vec<File>,
    /// The top-level modules: `src/<m>/` and `src/<m>.rs`.
    modules: BTreeSet<String>,
    /// Files that are `#[cfg(test)] mod x;` of their parent.
    test_files: BTreeSet<PathBuf>,
}

impl Source {
    fn read() -> Source {
        let root = crate::common::repo_root();
        let src = root.join("src");
        let mut paths = Vec::new();
        rs_files(&src, &mut paths);
        paths.sort();
        let files: Vec<File> = paths
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap();
                let rel = path.strip_prefix(&src).unwrap();
                File {
                    shown: format!("src/{}", rel.display()),
                    module: module_path(rel),
                    lines: text.lines().count(),
                    code: code_only(&text),
                    path,
                }
            })
            .collect();
        let modules = std::fs::read_dir(&src)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let name = path.file_stem()?.to_str()?.to_string();
                let is_rs = path.extension().is_some_and(|x| x == "rs");
                let module = path.is_dir() || (is_rs && name != "lib" && name != "main");
                module.then_some(name)
            })
            .collect();
        let test_files = files
            .iter()
            .flat_map(|f| out_of_line_test_modules(&f.path, &f.code))
            .collect();
        Source {
            lib_rs: std::fs::read_to_string(src.join("lib.rs")).unwrap(),
            files,
            modules,
            test_files,
        }
    }

    /// The child modules of the module at `module` (files and folders of its folder).
    fn children(&self, module: &[String]) -> BTreeSet<String> {
        self.files
            .iter()
            .filter(|f| f.module.len() > module.len() && f.module.starts_with(module))
            .map(|f| f.module[module.len()].clone())
            .collect()
    }
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `models/trees.rs` → `[models, trees]`; `models/mod.rs` → `[models]`; `lib.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod")
        || (parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main"))
    {
        parts.pop();
    }
    parts
}

// ---------------------------------------------------------------------------------
// Layers

/// The module names, in order, of the `//! Layers` line of `src/lib.rs`.
fn layers(lib_rs: &str) -> Result<Vec<String>, String> {
    let line = lib_rs
        .lines()
        .find(|l| l.trim_start().starts_with("//! Layers"))
        .ok_or("src/lib.rs has no line starting with `//! Layers` that lists the modules in order, e.g. \
                //! Layers, each importing only those before it: `error` → `config` → …")?;
    let names: Vec<String> = line
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(format!(
            "src/lib.rs's Layers line names no module in backticks: {line}"
        ));
    }
    Ok(names)
}

/// Every `file:line` where a module names a module at its own or a later layer, and
/// every module missing from (or named but absent in) the Layers line.
fn layer_violations(src: &Source, layers: &[String]) -> Vec<String> {
    let position: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let reexports = reexports(&code_only(&src.lib_rs), &src.modules);
    let mut problems = Vec::new();
    for m in &src.modules {
        if !BINARY_MODULES.contains(&m.as_str()) && !position.contains_key(m.as_str()) {
            problems.push(format!(
                "module `{m}` is not in the Layers line of src/lib.rs: add it to the Layers line"
            ));
        }
    }
    for name in layers {
        if !src.modules.contains(name) {
            problems.push(format!(
                "the Layers line of src/lib.rs names `{name}`, which is not a module of src/"
            ));
        }
    }
    for file in &src.files {
        let Some(own) = file.module.first() else {
            continue; // lib.rs and main.rs
        };
        // The binary may import anything; `error`, which every stage uses, names
        // every stage's own error type (see src/lib.rs).
        if BINARY_MODULES.contains(&own.as_str()) || own == "error" {
            continue;
        }
        let Some(&own_at) = position.get(own.as_str()) else {
            continue; // reported above
        };
        let mut seen = BTreeSet::new();
        for (line, path) in named_paths(&file.code, &file.module) {
            let Some(first) = path.first() else { continue };
            let other = if src.modules.contains(first) {
                first.clone()
            } else if let Some(m) = reexports.get(first) {
                m.clone() // e.g. crate::Renderer, re-exported from template
            } else {
                continue; // not one of quern's modules (e.g. crate::datafusion)
            };
            if &other == own || !seen.insert((line, other.clone())) {
                continue;
            }
            match position.get(other.as_str()) {
                None => problems.push(format!(
                    "{}:{line}: `{own}` names `crate::{first}`, a module not in the Layers line of src/lib.rs: add it to the Layers line",
                    file.shown
                )),
                Some(&at) if at >= own_at => problems.push(format!(
                    "{}:{line}: `{own}` (layer {}) names `crate::{first}` (layer {})",
                    file.shown,
                    own_at + 1,
                    at + 1
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

/// Names the crate root re-exports from its modules (`pub use template::{Renderer, …}`),
/// mapped to the module.
fn reexports(lib_code: &[char], modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let text: String = lib_code.iter().collect();
    for statement in text.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (module, items) = rest.split_once("::").unwrap_or((rest, ""));
        if !modules.contains(module.trim()) {
            continue;
        }
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.split(" as ").last().unwrap_or("").trim();
            let name = name.rsplit("::").next().unwrap_or("").trim();
            if !name.is_empty() && name != "self" {
                out.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Sibling loops

/// Pairs of sibling modules (files or folders in one module folder) that import each
/// other, each side with its first `file:line`.
fn sibling_loops(src: &Source) -> Vec<String> {
    // (parent module, from child, to child) → first place it is named.
    let mut edges: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for file in &src.files {
        for (line, path) in named_paths(&file.code, &file.module) {
            // Every folder module the file is inside of (not the crate root: its
            // children are the layers, checked by imports_point_one_way).
            for depth in 1..file.module.len() {
                let parent = &file.module[..depth];
                let from = &file.module[depth];
                if path.len() <= depth || !path.starts_with(parent) || &path[depth] == from {
                    continue;
                }
                let kids = children
                    .entry(parent.to_vec())
                    .or_insert_with(|| src.children(parent));
                if kids.contains(&path[depth]) {
                    edges
                        .entry((parent.to_vec(), from.clone(), path[depth].clone()))
                        .or_insert_with(|| format!("{}:{line}", file.shown));
                }
            }
        }
    }
    let mut problems = Vec::new();
    for ((parent, a, b), at) in &edges {
        if a < b {
            if let Some(back) = edges.get(&(parent.clone(), b.clone(), a.clone())) {
                let p = parent.join("::");
                problems.push(format!(
                    "{p}::{a} ↔ {p}::{b}: {at} names {b}, {back} names {a}"
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------
// Lexing

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The source with comments and the insides of string and char literals replaced by
/// spaces (newlines kept, so lines and columns stay where they were).
fn code_only(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.extend([' ', ' ']);
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.extend([' ', ' ']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_hashes(&chars, i) {
            // r"…", r#"…"#, br"…": no escapes; ends at `"` and as many `#`.
            let open = 1 + hashes + 1; // r, hashes, "
            out.extend(std::iter::repeat_n(' ', open - 1));
            out.push('"');
            i += open;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    out.push('"');
                    out.extend(std::iter::repeat_n(' ', hashes));
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => {
                        out.push(' ');
                        if let Some(&e) = chars.get(i + 1) {
                            out.push(blank(e));
                        }
                        i += 2;
                    }
                    '"' => {
                        out.push('"');
                        i += 1;
                        break;
                    }
                    other => {
                        out.push(blank(other));
                        i += 1;
                    }
                }
            }
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{1F600}'.
            out.push('\'');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            // 'x' (a lifetime `'a` is never followed by a quote two characters on).
            out.extend(['\'', ' ', '\'']);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At a raw string literal (`r"`, `r#"`, `br##"`…), the number of `#`s.
fn raw_string_hashes(chars: &[char], i: usize) -> Option<usize> {
    if chars[i] != 'r' {
        return None;
    }
    let starts_token = match i {
        0 => true,
        1 => chars[0] == 'b' || !is_ident(chars[0]),
        _ => !is_ident(chars[i - 1]) || (chars[i - 1] == 'b' && !is_ident(chars[i - 2])),
    };
    if !starts_token {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

fn line_of(code: &[char], at: usize) -> usize {
    code[..at].iter().filter(|&&c| c == '\n').count() + 1
}

fn skip_ws(code: &[char], mut i: usize) -> usize {
    while i < code.len() && code[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The identifier starting at `i`, if one does.
fn ident_at(code: &[char], i: usize) -> Option<String> {
    if i >= code.len() || !(code[i].is_alphabetic() || code[i] == '_') {
        return None;
    }
    Some(code[i..].iter().take_while(|&&c| is_ident(c)).collect())
}

/// Whether the whole word `word` starts at `i`.
fn word_at(code: &[char], i: usize, word: &str) -> bool {
    (i == 0 || !is_ident(code[i - 1])) && ident_at(code, i).is_some_and(|w| w == word)
}

/// The index of the brace closing the one opened at `open`.
fn closing_brace(code: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------------------
// Paths

/// Inline `mod name { … }` blocks: (name, start, end) as indices.
fn inline_modules(code: &[char]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for i in 0..code.len() {
        if !word_at(code, i, "mod") {
            continue;
        }
        let at = skip_ws(code, i + 3);
        let Some(name) = ident_at(code, at) else {
            continue;
        };
        let brace = skip_ws(code, at + name.chars().count());
        if code.get(brace) == Some(&'{') {
            if let Some(end) = closing_brace(code, brace) {
                out.push((name, brace, end));
            }
        }
    }
    out
}

/// Every path the code names through `crate::`, `super::` or `self::` (also inside
/// `use` groups), resolved to its segments after `crate`, with its line. `module` is
/// the file's module path; inline `mod x { … }` blocks are taken into account.
fn named_paths(code: &[char], module: &[String]) -> Vec<(usize, Vec<String>)> {
    let inline = inline_modules(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let word = ["crate", "super", "self"]
            .into_iter()
            .find(|w| word_at(code, i, w) && (i == 0 || code[i - 1] != ':'));
        let Some(word) = word else {
            i += 1;
            continue;
        };
        let after = i + word.len();
        if code.get(after) != Some(&':') || code.get(after + 1) != Some(&':') {
            i = after;
            continue;
        }
        let mut here: Vec<String> = module.to_vec();
        for (name, start, end) in &inline {
            if *start < i && i < *end {
                here.push(name.clone());
            }
        }
        let base = match word {
            "crate" => Vec::new(),
            "super" => here[..here.len().saturating_sub(1)].to_vec(),
            _ => here,
        };
        i = path_rest(code, after + 2, base, &mut out);
    }
    out
}

/// Parses what follows a `::` (`name…`, `{…}` or `*`) onto `prefix`; returns the index
/// after it.
fn path_rest(
    code: &[char],
    i: usize,
    prefix: Vec<String>,
    out: &mut Vec<(usize, Vec<String>)>,
) -> usize {
    let mut i = skip_ws(code, i);
    match code.get(i) {
        Some('{') => {
            i += 1;
            loop {
                i = skip_ws(code, i);
                match code.get(i) {
                    None => return i,
                    Some('}') => return i + 1,
                    Some(',') => i += 1,
                    _ => {
                        let before = i;
                        i = path_item(code, i, prefix.clone(), out);
                        // Whatever follows an item up to `,` or `}` (`as Name`).
                        while i < code.len() && code[i] != ',' && code[i] != '}' {
                            i += 1;
                        }
                        if i == before {
                            i += 1;
                        }
                    }
                }
            }
        }
        Some('*') => {
            out.push((line_of(code, i), prefix));
            i + 1
        }
        _ => path_item(code, i, prefix, out),
    }
}

/// Parses one path item (`name`, `name::…`, `self`, `super::…`) onto `prefix`.
fn path_item(
    code: &[char],
    i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(usize, Vec<String>)>,
) -> usize {
    let Some(name) = ident_at(code, i) else {
        if code.get(i) == Some(&'{') || code.get(i) == Some(&'*') {
            return path_rest(code, i, prefix, out);
        }
        return i;
    };
    let line = line_of(code, i);
    let after = i + name.chars().count();
    match name.as_str() {
        "self" => {}
        "super" => {
            prefix.pop();
        }
        _ => prefix.push(name),
    }
    let next = skip_ws(code, after + 2);
    let continues = code.get(after) == Some(&':')
        && code.get(after + 1) == Some(&':')
        && code
            .get(next)
            .is_some_and(|&c| c == '{' || c == '*' || c.is_alphabetic() || c == '_');
    if continues {
        path_rest(code, after + 2, prefix, out)
    } else {
        out.push((line, prefix));
        after
    }
}

// ---------------------------------------------------------------------------------
// Functions

struct Function {
    name: String,
    /// Index of the `fn` keyword.
    at: usize,
    line: usize,
    /// Lines from the `fn` line to the closing brace's, both included.
    lines: usize,
}

/// Every function with a body: `fn name … { … }`.
fn functions(code: &[char]) -> Vec<Function> {
    let mut out = Vec::new();
    for i in 0..code.len() {
        if !word_at(code, i, "fn") || !code.get(i + 2).is_some_and(|c| c.is_whitespace()) {
            continue;
        }
        let Some(name) = ident_at(code, skip_ws(code, i + 2)) else {
            continue;
        };
        // The body is the first `{` outside parentheses and brackets; a `;` first
        // means a declaration without one.
        let mut depth = 0i32;
        let mut body = None;
        for (j, &c) in code.iter().enumerate().skip(i) {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                '{' if depth == 0 => {
                    body = Some(j);
                    break;
                }
                ';' if depth == 0 => break,
                _ => {}
            }
        }
        let Some(end) = body.and_then(|b| closing_brace(code, b)) else {
            continue;
        };
        let line = line_of(code, i);
        out.push(Function {
            name,
            at: i,
            line,
            lines: line_of(code, end) - line + 1,
        });
    }
    out
}

/// The spans of `#[cfg(test)] mod x { … }` blocks.
fn test_module_spans(code: &[char]) -> Vec<std::ops::Range<usize>> {
    cfg_test_mods(code)
        .into_iter()
        .filter_map(|(_, after)| {
            (code.get(after) == Some(&'{'))
                .then(|| closing_brace(code, after).map(|end| after..end))
                .flatten()
        })
        .collect()
}

/// The files of `#[cfg(test)] mod x;` declarations in the file at `path`.
fn out_of_line_test_modules(path: &Path, code: &[char]) -> Vec<PathBuf> {
    let stem = path.file_stem().unwrap().to_string_lossy();
    let dir = match stem.as_ref() {
        "mod" | "lib" | "main" => path.parent().unwrap().to_path_buf(),
        _ => path.with_extension(""),
    };
    cfg_test_mods(code)
        .into_iter()
        .filter(|(_, after)| code.get(*after) == Some(&';'))
        .flat_map(|(name, _)| {
            [
                dir.join(format!("{name}.rs")),
                dir.join(&name).join("mod.rs"),
            ]
        })
        .collect()
}

/// `#[cfg(test)]` followed (after other attributes and a visibility) by `mod name`:
/// the name and the index of the character after it (`{` or `;`).
fn cfg_test_mods(code: &[char]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let attr: Vec<char> = "#[cfg(test)]".chars().collect();
    for i in 0..code.len() {
        if !code[i..].starts_with(&attr) {
            continue;
        }
        let mut j = skip_ws(code, i + attr.len());
        // Further attributes.
        while code.get(j) == Some(&'#') {
            match code[j..].iter().position(|&c| c == ']') {
                Some(k) => j = skip_ws(code, j + k + 1),
                None => break,
            }
        }
        if word_at(code, j, "pub") {
            j = skip_ws(code, j + 3);
            if code.get(j) == Some(&'(') {
                j = match code[j..].iter().position(|&c| c == ')') {
                    Some(k) => skip_ws(code, j + k + 1),
                    None => j,
                };
            }
        }
        if !word_at(code, j, "mod") {
            continue;
        }
        let at = skip_ws(code, j + 3);
        if let Some(name) = ident_at(code, at) {
            let after = skip_ws(code, at + name.chars().count());
            out.push((name, after));
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// The checks' own tests, on small sources.

#[test]
fn code_only_blanks_comments_strings_and_chars() {
    let text = "let a = \"{ crate::x }\"; // crate::y {\nlet b = '{'; let c = '\\''; /* } */ fn f<'a>(x: &'a str) {}\nlet r = r#\"crate::z \"}\"#;";
    let code: String = code_only(text).into_iter().collect();
    assert_eq!(code.chars().count(), text.chars().count());
    assert_eq!(code.lines().count(), 3);
    assert!(!code.contains("crate"), "{code}");
    assert_eq!(code.matches('{').count(), 1, "{code}");
    assert_eq!(code.matches('}').count(), 1, "{code}");
    assert!(code.contains("fn f<'a>(x: &'a str) {}"), "{code}");
}

#[test]
fn paths_resolve_groups_super_and_inline_modules() {
    let text = "use crate::{config::Environment, engine::{plan, run as r}};\n\
                use super::trees::Tree;\n\
                fn f() { crate::delta::open(); self::g(); }\n\
                mod tests {\n    use super::*;\n    use super::super::ops::Op;\n}\n";
    let module = vec!["models".to_string(), "onnx".to_string()];
    let paths = named_paths(&code_only(text), &module);
    let strs: Vec<(usize, String)> = paths.into_iter().map(|(l, p)| (l, p.join("::"))).collect();
    assert_eq!(
        strs,
        [
            (1, "config::Environment".to_string()),
            (1, "engine::plan".to_string()),
            (1, "engine::run".to_string()),
            (2, "models::trees::Tree".to_string()),
            (3, "delta::open".to_string()),
            (3, "models::onnx::g".to_string()),
            (5, "models::onnx".to_string()),
            (6, "models::ops::Op".to_string()),
        ]
    );
}

#[test]
fn functions_are_measured_to_their_closing_brace() {
    let text = "trait T { fn decl(&self); }\n\
                fn outer(x: [u8; 2]) -> impl Fn() {\n    let s = \"}\";\n    fn inner() {\n    }\n    move || {}\n}\n\
                #[cfg(test)]\nmod tests {\n    fn helper() {}\n}\n";
    let code = code_only(text);
    let found: Vec<(String, usize, usize)> = functions(&code)
        .into_iter()
        .map(|f| (f.name, f.line, f.lines))
        .collect();
    assert_eq!(
        found,
        [
            ("outer".to_string(), 2, 6),
            ("inner".to_string(), 4, 2),
            ("helper".to_string(), 10, 1),
        ]
    );
    let spans = test_module_spans(&code);
    let helper = functions(&code)
        .into_iter()
        .find(|f| f.name == "helper")
        .unwrap();
    assert!(spans.iter().any(|s| s.contains(&helper.at)));
    assert_eq!(
        layers("//! intro\n//! Layers, each importing only those before it: `error` → `config` → `engine`\n"),
        Ok(vec!["error".into(), "config".into(), "engine".into()])
    );
}
