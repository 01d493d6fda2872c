// Live mode's stroke watcher (webui/live.py): a stroke on the Draw or Map canvas (the pen lifted anywhere after it
// went down on the canvas), or the editor's Undo / Redo, fires this component's click event, whose handler runs a
// live frame while the Live switch is on. A listener on the editors themselves would make Gradio's page post their
// images as blobs after every stroke (refused: webui/editor.py), so strokes are watched here and the event reads
// the editors as uploaded files, as Generate does.
window.cnetLiveTrigger = trigger;  // the newest mount's (a remount must not leave a dead one behind)
if (!window.cnetLiveWatching) {
  window.cnetLiveWatching = true;
  const CANVASES = "#sketch canvas, #map-editor canvas";
  const HISTORY = ["#sketch", "#map-editor"].flatMap((id) =>
    ["Undo", "Redo"].map((label) => `${id} button[aria-label='${label}']`)).join(", ");
  let drawing = false;
  const frame = () => {
    const live = document.querySelector("#live-mode input");
    // After the editor has taken the change in (its own handlers run first).
    if (live && live.checked) setTimeout(() => window.cnetLiveTrigger("click"), 50);
  };
  document.addEventListener("pointerdown", (event) => {
    drawing = event.target instanceof Element && event.target.closest(CANVASES) !== null;
  }, true);
  document.addEventListener("pointerup", (event) => {
    const onHistory = event.target instanceof Element && event.target.closest(HISTORY) !== null;
    if (drawing || onHistory) frame();
    drawing = false;
  }, true);
}
