// Live mode's stroke watcher (webui/live.py): a pen lifted on the Draw or Map canvas fires this component's click
// event, whose handler runs a live frame while the Live switch is on. A listener on the editors themselves would make
// Gradio's page post their images as blobs after every stroke (refused: webui/editor.py), so strokes are watched
// here and the event reads the editors as uploaded files, as Generate does.
window.cnetLiveTrigger = trigger;  // the newest mount's (a remount must not leave a dead one behind)
if (!window.cnetLiveWatching) {
  window.cnetLiveWatching = true;
  document.addEventListener("pointerup", (event) => {
    const target = event.target;
    if (!(target instanceof Element) || !target.closest("#sketch canvas, #map-editor canvas")) return;
    const live = document.querySelector("#live-mode input");
    // After the editor has taken the stroke in (its own pointerup handler runs first).
    if (live && live.checked) setTimeout(() => window.cnetLiveTrigger("click"), 50);
  }, true);
}
