//! The editor (nice-plug-egui): a piano roll of primer and phrase, every parameter, the
//! model's status, ideas to recall, export. It reads shared state and sends commands; it never
//! waits on the audio thread.

pub mod view_model;

use crate::midi_file::{write_midi, TrackToWrite};
use crate::params::ContinuoParams;
use crate::shared::{Idea, Shared, WorkerView};
use crate::worker::{Command, ModelSource};
use crossbeam_channel::Sender;
use egui::{Color32, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};
use nice_plug::context::gui::{GuiContext, ParamSetter};
use nice_plug::prelude::Param;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiEditorState, EguiNiceSettings, NiceEguiApp, RepaintNotifier,
};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use view_model::{
    activity_line, export_name, guard_line, history_labels, key_label, model_line, utc_datetime,
    BarPick, PlayingPhrase, RollLayout,
};

const PRIMER_COLOUR: Color32 = Color32::from_rgb(150, 150, 160);
const PHRASE_COLOUR: Color32 = Color32::from_rgb(70, 140, 255);
const PICK_COLOUR: Color32 = Color32::from_rgba_premultiplied(60, 50, 10, 60);

/// Where exports go: `$CONTINUO_EXPORT_DIR`, else `~/Music/Continuo`, else the temp folder.
pub fn export_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CONTINUO_EXPORT_DIR") {
        return d.into();
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join("Music").join("Continuo"),
        None => std::env::temp_dir().join("Continuo"),
    }
}

/// Writes an idea as a .mid file named by date, key and seed; returns its path.
pub fn export_idea(idea: &Idea, dir: &std::path::Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = dir.join(export_name(idea, utc_datetime(now)));
    write_midi(
        &path,
        &[TrackToWrite {
            name: "Continuo",
            channel: 0,
            notes: &idea.notes,
        }],
        idea.beats_per_bar,
        120.0,
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

pub struct EditorApp {
    params: Arc<ContinuoParams>,
    shared: Arc<Shared>,
    commands: Sender<Command>,
    gui: Option<GuiContext>,
    selected: Option<u64>,
    /// Bars picked in the roll for *Regenerate bar*, and the idea they belong to.
    pick: BarPick,
    pick_idea: Option<u64>,
    export_message: Option<String>,
    model_path_text: String,
}

impl EditorApp {
    pub fn new(
        params: Arc<ContinuoParams>,
        shared: Arc<Shared>,
        commands: Sender<Command>,
    ) -> Self {
        let model_path_text = params
            .session
            .lock()
            .ok()
            .and_then(|s| s.model_path.clone())
            .unwrap_or_default();
        Self {
            params,
            shared,
            commands,
            gui: None,
            selected: None,
            pick: BarPick::default(),
            pick_idea: None,
            export_message: None,
            model_path_text,
        }
    }
}

pub fn create(
    params: Arc<ContinuoParams>,
    shared: Arc<Shared>,
    commands: Sender<Command>,
    state: Arc<EguiEditorState>,
) -> Option<EguiEditor<EditorApp>> {
    create_egui_editor(
        state,
        RepaintNotifier::new(),
        EguiNiceSettings::new().with_tile("Continuo"),
        EditorApp::new(params, shared, commands),
    )
}

impl NiceEguiApp for EditorApp {
    fn build(
        &mut self,
        _ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        let view = self.shared.view().clone();
        let current: Option<Idea> = match self.selected {
            Some(id) => view.history.iter().find(|i| i.id == id).cloned(),
            None => None,
        }
        .or_else(|| view.history.front().cloned());

        // Keep text off the window's edges.
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            ui.add_space(10.0);
            ui.heading("Continuo");
            ui.label(model_line(&view.model));
        });
        let playing = current.as_ref().map(|idea| PlayingPhrase {
            playhead: self.shared.playhead.load(),
            length_beats: idea.bars as f64 * idea.beats_per_bar,
            beats_per_bar: idea.beats_per_bar,
            looping: self.params.loop_phrase.value(),
        });
        ui.horizontal(|ui| {
            ui.add_space(10.0);
            ui.label(activity_line(&view, playing));
            if let Some(g) = guard_line(&view.model) {
                ui.label(format!("· {g}"));
            }
            if let Some(e) = &view.last_error {
                ui.colored_label(Color32::from_rgb(230, 90, 80), e);
            }
        });
        ui.separator();

        egui::Panel::right("controls")
            .resizable(false)
            .exact_size(300.0)
            .show(ui, |ui| {
                // The panel's full height, scrolling: a host window can be short.
                egui::ScrollArea::vertical()
                    .max_height(ui.available_height())
                    .auto_shrink([false, false])
                    .show(ui, |ui| {
                        egui::Grid::new("params")
                            .num_columns(2)
                            .spacing([6.0, 3.0])
                            .show(ui, |ui| {
                                ui.strong("Trigger");
                                ui.end_row();
                                labelled(ui, &self.params.trigger, &setter);
                                labelled(ui, &self.params.silence_beats, &setter);
                                labelled(ui, &self.params.trigger_note, &setter);
                                labelled(ui, &self.params.quantize, &setter);
                                ui.strong("Phrase");
                                ui.end_row();
                                labelled(ui, &self.params.bars, &setter);
                                labelled(ui, &self.params.temperature, &setter);
                                labelled(ui, &self.params.top_p, &setter);
                                labelled(ui, &self.params.key_lock, &setter);
                                labelled(ui, &self.params.key, &setter);
                                labelled(ui, &self.params.low, &setter);
                                labelled(ui, &self.params.high, &setter);
                                labelled(ui, &self.params.seed, &setter);
                                ui.strong("Texture");
                                ui.end_row();
                                labelled(ui, &self.params.polyphony, &setter);
                                labelled(ui, &self.params.density, &setter);
                                labelled(ui, &self.params.register, &setter);
                                labelled(ui, &self.params.rhythm, &setter);
                                labelled(ui, &self.params.variation, &setter);
                                labelled(ui, &self.params.candidates, &setter);
                                ui.strong("Output");
                                ui.end_row();
                                labelled(ui, &self.params.loop_phrase, &setter);
                                labelled(ui, &self.params.pass_through, &setter);
                                labelled(ui, &self.params.channel, &setter);
                            });
                        ui.label("Model folder (empty: built-in)");
                        ui.text_edit_singleline(&mut self.model_path_text);
                        if ui.button("Load model").clicked() {
                            let path = self.model_path_text.trim().to_string();
                            let source = if path.is_empty() {
                                ModelSource::Embedded
                            } else {
                                ModelSource::Folder(path.clone().into())
                            };
                            if let Ok(mut s) = self.params.session.lock() {
                                s.model_path = (!path.is_empty()).then_some(path);
                            }
                            let _ = self.commands.try_send(Command::LoadModel(source));
                        }
                    });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            let primer = current.as_ref().map_or(&[][..], |i| &i.primer[..]);
            ui.label(format!("Primer key: {}", key_label(primer)));
            self.piano_roll(ui, current.as_ref());
            // The pick follows an idea into its variant (regenerate the same bar again);
            // another idea clears it.
            match current.as_ref() {
                Some(c) if self.pick_idea == Some(c.id) => {}
                Some(c) if c.variant_of.map(|v| v.parent) == self.pick_idea => {
                    self.pick_idea = Some(c.id)
                }
                _ => self.pick.clear(),
            }
            ui.horizontal(|ui| {
                self.bar_buttons(ui, current.as_ref(), &view);
            });
            ui.horizontal(|ui| {
                if ui
                    .button("Generate")
                    .on_hover_text("Continue the last primer")
                    .clicked()
                {
                    self.shared
                        .generate_requested
                        .store(true, Ordering::Relaxed);
                }
                if ui
                    .button("Another idea")
                    .on_hover_text("Same primer, new seed")
                    .clicked()
                {
                    let seed = (self.params.seed.value() + 1) % 10_000;
                    setter.begin_set_parameter(&self.params.seed);
                    setter.set_parameter(&self.params.seed, seed);
                    setter.end_set_parameter(&self.params.seed);
                    let _ = self
                        .commands
                        .try_send(Command::Regenerate { seed: seed as u64 });
                    self.selected = None;
                }
                let mut locked = self.shared.locked.load(Ordering::Relaxed);
                if ui
                    .checkbox(&mut locked, "Keep")
                    .on_hover_text("New triggers do not replace this phrase")
                    .changed()
                {
                    self.shared.locked.store(locked, Ordering::Relaxed);
                }
                if ui.button("Export .mid").clicked() {
                    self.export_message = Some(match &current {
                        Some(idea) => match export_idea(idea, &export_dir()) {
                            Ok(p) => format!("Saved {}", p.display()),
                            Err(e) => e,
                        },
                        None => "Nothing to export yet".into(),
                    });
                }
                if ui.button("Open folder").clicked() {
                    let dir = export_dir();
                    let _ = std::fs::create_dir_all(&dir);
                    let opener = if cfg!(target_os = "macos") {
                        "open"
                    } else if cfg!(windows) {
                        "explorer"
                    } else {
                        "xdg-open"
                    };
                    let _ = std::process::Command::new(opener).arg(&dir).spawn();
                }
            });
            ui.label(
                self.export_message
                    .clone()
                    .unwrap_or_else(|| format!("Exports go to {}", export_dir().display())),
            );
            ui.separator();
            ui.label("Ideas (click to recall):");
            let history: Vec<Idea> = view.history.iter().cloned().collect();
            for (idea, label) in history.iter().zip(history_labels(&history)) {
                let selected = current.as_ref().is_some_and(|c| c.id == idea.id);
                if ui.selectable_label(selected, label).clicked() {
                    self.selected = Some(idea.id);
                    let _ = self
                        .commands
                        .try_send(Command::Recall { idea: idea.clone() });
                }
            }
        });
        // The playhead moves with the host: keep repainting.
        ui.ctx().request_repaint();
    }
}

/// A parameter's name beside its slider, as one row of a two-column grid.
fn labelled<P: Param>(ui: &mut egui::Ui, param: &P, setter: &ParamSetter) {
    ui.label(egui::RichText::new(param.name()).small());
    ui.add(ParamSlider::for_param(param, setter).with_width(90.0));
    ui.end_row();
}

impl EditorApp {
    /// *Regenerate bar* for the bars picked in the roll, and *Undo* for a variant.
    fn bar_buttons(&mut self, ui: &mut egui::Ui, idea: Option<&Idea>, view: &WorkerView) {
        let can_infill = view.model.loaded() && view.model.can_infill;
        let regenerate = ui.add_enabled(
            can_infill && !view.generating && self.pick.bars.is_some() && idea.is_some(),
            egui::Button::new(self.pick.button_label()),
        );
        let regenerate = if can_infill {
            regenerate.on_hover_text("Click a bar of the phrase (drag for several), then make it anew: the bars around it stay")
        } else {
            regenerate.on_disabled_hover_text("This model was trained before infilling: load a model trained with fill-in-the-middle")
        };
        if let (true, Some(idea), Some(bars)) = (regenerate.clicked(), idea, self.pick.bars) {
            // A new seed per idea and bars: clicking again (on the variant) gives another take.
            let seed = idea
                .seed
                .wrapping_mul(31)
                .wrapping_add(idea.id)
                .wrapping_add(bars.0 as u64)
                % 1_000_000;
            let _ = self.commands.try_send(Command::RegenerateBars {
                idea: idea.clone(),
                bars,
                seed,
            });
            self.selected = None;
        }
        let parent = idea
            .and_then(|i| i.variant_of)
            .filter(|v| view.history.iter().any(|i| i.id == v.parent));
        let undo = ui
            .add_enabled(
                parent.is_some() && !view.generating,
                egui::Button::new("Undo"),
            )
            .on_hover_text("Bring back the bars before they were regenerated");
        if let (true, Some(idea), Some(v)) = (undo.clicked(), idea, parent) {
            let _ = self.commands.try_send(Command::Undo { idea: idea.clone() });
            self.selected = Some(v.parent);
        }
    }

    fn piano_roll(&mut self, ui: &mut egui::Ui, idea: Option<&Idea>) {
        let size = Vec2::new(ui.available_width().clamp(200.0, 600.0), 220.0);
        let (response, painter) = ui.allocate_painter(size, Sense::click_and_drag());
        let area = response.rect;
        painter.rect_filled(area, 4.0, Color32::from_rgb(24, 26, 32));
        let Some(idea) = idea else {
            painter.text(
                area.center(),
                egui::Align2::CENTER_CENTER,
                "Play a chord or a riff, then pause",
                egui::FontId::proportional(14.0),
                Color32::GRAY,
            );
            return;
        };
        let layout = RollLayout::fit(
            area.width(),
            area.height(),
            &idea.primer,
            &idea.notes,
            idea.beats_per_bar,
            idea.bars,
        );
        let bar_under = |pos: Option<Pos2>| {
            pos.and_then(|p| layout.phrase_bar_at(p.x - area.left(), idea.bars))
        };
        if response.drag_started() || response.clicked() {
            if let Some(bar) = bar_under(response.interact_pointer_pos()) {
                self.pick.press(bar);
                self.pick_idea = Some(idea.id);
            }
        } else if response.dragged() {
            if let Some(bar) = bar_under(response.interact_pointer_pos()) {
                self.pick.drag_to(bar);
            }
        }
        if let (Some(bars), true) = (self.pick.bars, self.pick_idea == Some(idea.id)) {
            let (x0, x1) = layout.bars_x(bars);
            painter.rect_filled(
                Rect::from_min_max(
                    Pos2::new(area.left() + x0, area.top()),
                    Pos2::new(area.left() + x1, area.bottom()),
                ),
                0.0,
                PICK_COLOUR,
            );
        }
        for (x, bar) in layout.grid() {
            let colour = if bar {
                Color32::from_gray(90)
            } else {
                Color32::from_gray(45)
            };
            painter.line_segment(
                [
                    Pos2::new(area.left() + x, area.top()),
                    Pos2::new(area.left() + x, area.bottom()),
                ],
                Stroke::new(1.0, colour),
            );
        }
        for r in layout.rects(&idea.primer, &idea.notes) {
            let base = if r.generated {
                PHRASE_COLOUR
            } else {
                PRIMER_COLOUR
            };
            let alpha = 120 + (r.velocity as u32 * 135 / 127) as u8;
            let rect = Rect::from_min_size(
                Pos2::new(area.left() + r.x, area.top() + r.y),
                Vec2::new(r.w, r.h.max(2.0)),
            );
            painter.rect_filled(
                rect,
                1.0,
                Color32::from_rgba_unmultiplied(base.r(), base.g(), base.b(), alpha),
            );
            painter.rect_stroke(
                rect,
                1.0,
                Stroke::new(0.5, Color32::BLACK),
                StrokeKind::Inside,
            );
        }
        if let Some(x) = layout.playhead_x(self.shared.playhead.load()) {
            painter.line_segment(
                [
                    Pos2::new(area.left() + x, area.top()),
                    Pos2::new(area.left() + x, area.bottom()),
                ],
                Stroke::new(2.0, Color32::from_rgb(255, 200, 60)),
            );
        }
    }
}
