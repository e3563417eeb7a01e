//! `importer status`: each resource's last complete run and, with
//! incremental loading, its saved position and what the next run sends.

use pipeline_core::error_chain;
use pipeline_core::resources::Resource;
use std::io::Write;

use crate::Importer;

impl Importer {
    /// Writes a line per resource it imports, e.g.
    /// `tickets: last complete run 2026-12-07T16:50:01Z (started 16:49:58Z): 5 page(s), 120 records; position 2026-01-05T08:00:00Z; the next run sends updated_since=2026-01-05T07:50:00Z`.
    /// Reads the bucket only; the API is not asked.
    pub async fn status(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        self.check().await?;
        for source in &self.config.sources {
            let resource: &'static dyn Resource = source.resource;
            let name = resource.name();
            let saved = self
                .runs
                .get(name)
                .await
                .map_err(|e| anyhow::anyhow!("{name}: {}", error_chain(&e)))?;
            let incremental = resource.spec().incremental.as_ref();
            let mut line = match &saved {
                None => format!("{name}: no complete run yet"),
                Some(run) => format!(
                    "{name}: last complete run {} (started {}): {} page(s), {} records",
                    run.completed_at, run.started_at, run.pages, run.records
                ),
            };
            if let Some(incremental) = incremental {
                let position = saved.as_ref().and_then(|run| run.position(incremental));
                let sent = match &position {
                    Some(position) => {
                        line.push_str(&format!(
                            "; position {}",
                            saved
                                .as_ref()
                                .and_then(|r| r.position.as_deref())
                                .unwrap_or_default()
                        ));
                        Some(position.sent(incremental))
                    }
                    None => {
                        line.push_str("; no position saved");
                        source.initial.clone()
                    }
                };
                match sent {
                    Some(sent) => line.push_str(&format!(
                        "; the next run sends {}={sent}",
                        incremental.param
                    )),
                    None => line.push_str("; the next run reads every page"),
                }
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}
