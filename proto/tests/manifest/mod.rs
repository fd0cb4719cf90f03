//! Reading a crate's `Cargo.toml` for the layer tests of every crate (each includes this file).

/// The names in a manifest's `[dependencies]` (and target or build dependencies) tables.
pub fn dependencies(manifest: &str) -> Vec<String> {
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let is_dep_section = section == "[dependencies]"
            || section.starts_with("[target.") && section.ends_with(".dependencies]")
            || section == "[build-dependencies]";
        if is_dep_section
            && !line.starts_with('#')
            && let Some((name, _)) = line.split_once('=')
        {
            let name = name.trim().split('.').next().unwrap_or_default().trim_matches('"').to_owned();
            if !name.is_empty() {
                deps.push(name);
            }
        }
    }
    deps
}
