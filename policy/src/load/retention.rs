//! The `retention:` section: how long log entries are kept, and where they are archived.

use serde_json::{Value, json};

use super::{Loader, PolicyError, parse_duration};
use crate::yaml::Node;

impl Loader<'_> {
    pub(super) fn retention(&self, node: &Node) -> Result<(crate::Retention, Value), PolicyError> {
        let entries = self.map(node, "`retention`")?;
        self.check_keys(entries, RETENTION_KEYS, "retention")?;
        let mut max_age = None;
        let mut archive_dir = None;
        for (key, value) in entries {
            match key.name.as_str() {
                "max_age" => {
                    let text = self.string(value, "`max_age`")?;
                    max_age = Some(parse_duration(&text).ok_or_else(|| {
                        self.err(value.pos, format!("`max_age` `{text}` must look like `90d` (s, m, h, d)"))
                    })?);
                }
                "archive_dir" => {
                    let dir = self.string(value, "`archive_dir`")?;
                    if !dir.starts_with('/') {
                        return Err(
                            self.err(value.pos, format!("`archive_dir` `{dir}` must be an absolute path"))
                        );
                    }
                    archive_dir = Some(dir);
                }
                _ => {}
            }
        }
        let Some(max_age_seconds) = max_age else {
            return Err(self.err(node.pos, "`retention` needs `max_age` (for example `max_age: 90d`)"));
        };
        let norm = json!({"max_age": max_age_seconds, "archive_dir": archive_dir});
        Ok((crate::Retention { max_age_seconds, archive_dir }, norm))
    }
}

const RETENTION_KEYS: &[&str] = &["max_age", "archive_dir"];
