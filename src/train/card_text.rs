//! The `MODEL_CARD.md` a training run writes beside `config.json`: the same facts, for a
//! person — what the model was trained on, from which model, for how long, and the held-out
//! losses before and after.

use crate::model::files::ModelCard;
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write;
use std::path::Path;

pub const CARD_TEXT_FILE: &str = "MODEL_CARD.md";

/// Writes `dir/MODEL_CARD.md` from the card.
pub fn write_card_text(dir: &Path, card: &ModelCard) -> Result<()> {
    let path = dir.join(CARD_TEXT_FILE);
    std::fs::write(&path, card_text(card)).with_context(|| format!("writing {}", path.display()))
}

/// The card as Markdown. Fields a card lacks are left out, never invented.
pub fn card_text(card: &ModelCard) -> String {
    let t = &card.training;
    let m = &card.metrics;
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut s = String::new();
    let _ = writeln!(s, "# Model card: {}\n", card.name);
    let _ = writeln!(
        s,
        "- **Architecture**: {} ({} parameters), vocabulary v{} ({} tokens).",
        card.architecture.describe(),
        card.architecture.parameter_count(),
        card.vocab.version,
        card.vocab.size
    );
    match text(t, "from") {
        Some(base) => {
            let _ = writeln!(s, "- **Fine-tuned from** `{base}`.");
        }
        None => {
            let _ = writeln!(s, "- **Trained from random weights.**");
        }
    }
    if let Some(data) = text(t, "data") {
        let _ = writeln!(
            s,
            "- **Data**: `{data}`: {} files trained on, {} held out ({}), {} notes in training, {} skipped.",
            num(t, "train_files").unwrap_or(0.0),
            num(t, "validation_files").unwrap_or(0.0),
            text(t, "split").unwrap_or_else(|| "by file".into()),
            num(t, "train_notes").unwrap_or(0.0),
            num(t, "skipped_files").unwrap_or(0.0),
        );
    }
    if t.get("validation_overlaps_training") == Some(&Value::Bool(true)) {
        let _ = writeln!(
            s,
            "  The held-out file has versions in training (a folder of versions of one piece, or one file): its loss is optimistic."
        );
    }
    if let (Some(minutes), Some(steps)) = (num(t, "train_minutes"), num(t, "steps")) {
        let _ = writeln!(
            s,
            "- **Training**: {minutes:.1} minutes, {steps} steps of {} windows × {} tokens, {:.0} tokens/s.",
            num(t, "batch").unwrap_or(0.0),
            num(t, "seq_len").unwrap_or(0.0),
            num(t, "tokens_per_s").unwrap_or(0.0),
        );
    }
    if let Some(lr) = num(t, "peak_lr") {
        let _ = write!(
            s,
            "- **Schedule**: {}, peak learning rate {lr:e}, warm-up {:.0} % of the run, cosine decay",
            text(t, "schedule").unwrap_or_else(|| "from scratch".into()),
            100.0 * num(t, "warmup_share").unwrap_or(0.0),
        );
        match t.get("base_mix").filter(|v| !v.is_null()) {
            Some(mix) => {
                let share = num(mix, "share").unwrap_or(0.0);
                let data = text(mix, "data").unwrap_or_default();
                let _ = if share > 0.0 {
                    writeln!(
                        s,
                        "; {:.0} % of each batch rehearses the base corpus `{data}`.",
                        100.0 * share
                    )
                } else {
                    writeln!(
                        s,
                        "; no rehearsal of the base corpus `{data}` (only measured)."
                    )
                };
            }
            None => {
                let _ = writeln!(s, ".");
            }
        }
    }
    let _ = writeln!(s, "\n## Held-out loss (nats per token)\n");
    let _ = writeln!(s, "| files | before training | after |\n|---|---|---|");
    if let (Some(a), Some(b)) = (num(m, "initial_val_loss"), num(m, "final_val_loss")) {
        let before = if t.get("from").is_some_and(|v| !v.is_null()) {
            format!("{a:.3} (the base model)")
        } else {
            format!("{a:.3} (random weights)")
        };
        let _ = writeln!(s, "| held out of the data above | {before} | {b:.3} |");
    }
    if let (Some(a), Some(b)) = (
        num(m, "base_val_loss_before"),
        num(m, "base_val_loss_after"),
    ) {
        let _ = writeln!(
            s,
            "| held out of the base corpus (forgetting: {:+.3}) | {a:.3} | {b:.3} |",
            b - a
        );
    }
    if let Some(cmd) = text(t, "command") {
        let _ = writeln!(s, "\n## Command\n\n```\n{cmd}\n```");
    }
    let _ = writeln!(
        s,
        "\nThe model learned from the files above: what may be done with its output is bounded by their licenses."
    );
    s
}
