// Fixwright dashboard script. It has the htmx extension that shows a JSON API response as text,
// with invisible characters marked. It updates the running total and the submit button of the
// "Preview fix" form, and handles the out-of-band swaps of the Apply form while its request is
// in flight.
// Loaded after htmx (both deferred, in document order), so `htmx` exists here.
(function () {
  'use strict';

  // Returns one sentence about an apply response: the error message, the wait for a GitHub rate
  // limit or for another apply (described as over once its time has passed), or what was applied.
  // The same wording is in src/web/views/apply-result.ts for browsers without JavaScript.
  function describeApplyResult(httpStatus, data) {
    if (!data || typeof data !== 'object') return null;
    if (httpStatus >= 400) {
      return data.error && typeof data.error.message === 'string' ? data.error.message : null;
    }
    var waitOver = function (until) {
      return Date.parse(until) <= Date.now();
    };
    if (data.status === 'waiting' && typeof data.rateLimitedUntil === 'string') {
      if (waitOver(data.rateLimitedUntil)) {
        return (
          "GitHub's rate limit on this installation lifted at " + data.rateLimitedUntil +
          '; the apply continues as soon as a worker takes its job.'
        );
      }
      return (
        'GitHub rate-limits this installation until ' + data.rateLimitedUntil +
        '; the apply continues then.'
      );
    }
    if (data.status === 'waiting' && typeof data.otherApplyWaitUntil === 'string') {
      if (waitOver(data.otherApplyWaitUntil)) {
        return (
          'The wait for another apply of this preview is over; this apply continues as soon as ' +
          'a worker takes its job.'
        );
      }
      return (
        'Another apply of this preview is in progress. Unless it succeeds, this apply continues ' +
        'when it ends, by ' + data.otherApplyWaitUntil + ' at the latest.'
      );
    }
    if (!Array.isArray(data.files)) return null;
    var count = data.files.length + (data.files.length === 1 ? ' file' : ' files');
    var verb = data.alreadyApplied ? 'Already applied ' : 'Applied ';
    var note = typeof data.note === 'string' ? ' ' + data.note : '';
    if (data.mode === 'commit' && typeof data.commitSha === 'string') {
      return verb + count + ' as commit ' + data.commitSha.slice(0, 7) + '.' + note;
    }
    return verb + count + ' as review suggestions.' + note;
  }

  // Returns the invisible characters that the preview page sends in #apply-result's
  // data-invisible-characters (from src/text/invisible-characters.ts), or null without them.
  function readInvisibleCharacters() {
    var result = document.getElementById('apply-result');
    var data = result && result.getAttribute('data-invisible-characters');
    if (!data) return null;
    var parsed = JSON.parse(data);
    return { split: new RegExp('(' + parsed.pattern + ')'), names: parsed.names };
  }

  // Appends `text` to `parent` as text, with each invisible character shown as a mark with its
  // code point in place of the character, as src/web/views/components/marked-text.tsx renders
  // it on the server. The response may name files whose names contain a bidi override, which
  // would display the rest of the line reversed.
  function appendMarkedText(parent, text, characters) {
    var parts = characters ? text.split(characters.split) : [text];
    for (var index = 0; index < parts.length; index++) {
      if (index % 2 === 0) {
        if (parts[index] !== '') parent.appendChild(document.createTextNode(parts[index]));
        continue;
      }
      var hex = parts[index].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
      var mark = document.createElement('span');
      mark.className = 'char-mark';
      mark.title =
        'U+' + hex + ' ' + (characters.names[hex] || 'control character') +
        ', shown in place of the invisible character';
      mark.textContent = 'U+' + hex;
      parent.appendChild(mark);
    }
  }

  // Posts the form's previewVersion as JSON ("{}" when the form has none) and shows the response
  // (status and pretty-printed body) as escaped text, because the JSON API returns data that
  // must never be parsed as HTML. The CSRF token goes in a header, so the body leaves it out.
  htmx.defineExtension('json-result', {
    onEvent: function (name, event) {
      if (name === 'htmx:configRequest') {
        event.detail.headers['Content-Type'] = 'application/json';
        event.detail.headers['Accept'] = 'application/json';
      }
      return true;
    },
    encodeParameters: function (xhr, parameters) {
      xhr.overrideMimeType('text/json');
      var body = {};
      var seen = parameters && parameters.get('previewVersion');
      if (typeof seen === 'string') body.previewVersion = seen;
      return JSON.stringify(body);
    },
    transformResponse: function (text, xhr) {
      var displayText = text;
      var data = null;
      try {
        data = JSON.parse(text);
        displayText = JSON.stringify(data, null, 2);
      } catch (error) {
        // Not JSON: show the text as it came.
      }
      var wrapper = document.createElement('div');
      var status = document.createElement('p');
      status.className = xhr.status < 400 ? 'notice' : 'error';
      var summary = describeApplyResult(xhr.status, data);
      var characters = readInvisibleCharacters();
      appendMarkedText(status, 'HTTP ' + xhr.status + (summary ? ': ' + summary : ''), characters);
      var details = document.createElement('details');
      var label = document.createElement('summary');
      label.textContent = 'Response';
      var body = document.createElement('pre');
      body.className = 'json';
      appendMarkedText(body, displayText, characters);
      details.appendChild(label);
      details.appendChild(body);
      wrapper.appendChild(status);
      wrapper.appendChild(details);
      return wrapper.innerHTML;
    },
  });

  // Updates the "Preview fix" total when a finding is checked or unchecked. A file with any
  // checked finding counts with the estimate for its checked findings alone, which the server
  // computes the same way: ceil((base bytes + the findings' bytes + the guidance bytes of each
  // kind among them) / bytes per token) + fixed tokens. Without JavaScript the total stays as
  // rendered, and the server still rejects a selection over the allowance.
  function fileTokens(estimate, checked) {
    var bytes = Number(estimate.getAttribute('data-base-bytes'));
    var perToken = Number(estimate.getAttribute('data-bytes-per-token'));
    var fixed = Number(estimate.getAttribute('data-fixed-tokens'));
    if (!estimate.hasAttribute('data-base-bytes') || !(perToken > 0)) {
      return Number(estimate.getAttribute('data-tokens'));
    }
    var kindBytes = JSON.parse(estimate.getAttribute('data-kind-bytes') || '{}');
    var kinds = {};
    for (var index = 0; index < checked.length; index++) {
      bytes += Number(checked[index].getAttribute('data-bytes'));
      var kind = checked[index].getAttribute('data-kind');
      if (kind !== null && !Object.prototype.hasOwnProperty.call(kinds, kind)) {
        kinds[kind] = true;
        bytes += Number(kindBytes[kind] || 0);
      }
    }
    return Math.ceil(bytes / perToken) + fixed;
  }

  function updatePreviewBudget(form) {
    var budget = form.querySelector('[data-preview-budget]');
    if (!budget) return;
    var files = 0;
    var tokens = 0;
    var sizesKnown = true;
    form.querySelectorAll('fieldset.file-findings').forEach(function (fieldset) {
      var estimate = fieldset.querySelector('[data-tokens]');
      var checked = fieldset.querySelectorAll('input[name="findingIds"]:checked');
      if (!estimate || checked.length === 0) return;
      files += 1;
      tokens += fileTokens(estimate, checked);
      if (estimate.getAttribute('data-size-known') !== 'true') sizesKnown = false;
    });
    budget.querySelector('[data-selected-files]').textContent = files + (files === 1 ? ' file' : ' files');
    budget.querySelector('[data-selected-estimate]').textContent = sizesKnown ? 'about' : 'at least';
    budget.querySelector('[data-selected-tokens]').textContent = tokens.toLocaleString('en-US');
    var remaining = budget.getAttribute('data-remaining');
    showNotice(budget.querySelector('[data-over-allowance]'), remaining !== null && tokens > Number(remaining));
  }

  // Shows a notice with the text of its data-text attribute, or hides it without text. The
  // server renders hidden notices without text, so that a browser that ignores the hidden
  // attribute shows only the notices that apply.
  function showNotice(element, visible) {
    element.hidden = !visible;
    element.textContent = visible ? element.getAttribute('data-text') : '';
  }

  // Disables "Preview fix" and shows why while no finding is checked, or more than a preview
  // takes (the budget's data-max-findings), because the server rejects either selection with
  // 400. A button that htmx disabled for a request in flight is left to htmx, and the form is
  // checked again once that request ends.
  function updatePreviewButton(form) {
    var button = form.querySelector('button[type="submit"]');
    var notice = form.querySelector('[data-nothing-checked]');
    if (!button || !notice) return;
    var checked = form.querySelectorAll('input[name="findingIds"]:checked').length;
    showNotice(notice, checked === 0);
    var budget = form.querySelector('[data-preview-budget]');
    var tooMany = form.querySelector('[data-too-many-findings]');
    var maxFindings = budget ? Number(budget.getAttribute('data-max-findings')) : NaN;
    var overLimit = maxFindings > 0 && checked > maxFindings;
    if (tooMany) showNotice(tooMany, overLimit);
    if (button.hasAttribute('data-disabled-by-htmx')) return;
    button.disabled = checked === 0 || overLimit;
  }

  document.addEventListener('change', function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.name !== 'findingIds' || !input.form) return;
    updatePreviewBudget(input.form);
    updatePreviewButton(input.form);
  });

  // The Apply form comes again, out of band, with each files fragment. Swapped in while the
  // form's own request is in flight, it would replace the button that hx-disabled-elt disabled
  // with an enabled one. Such a swap is skipped instead, and the form of the newest skipped
  // fragment is swapped in once the request ends, so the form still follows the files on screen.
  var formsInFlight = new WeakSet();
  var skippedForms = new WeakMap();

  document.addEventListener('htmx:beforeSend', function (event) {
    if (event.target instanceof HTMLFormElement) formsInFlight.add(event.target);
  });

  document.addEventListener('htmx:oobBeforeSwap', function (event) {
    var target = event.detail.target;
    if (!(target instanceof HTMLFormElement) || !formsInFlight.has(target)) return;
    // For an outerHTML swap, htmx 2 passes a fragment that contains the new element.
    var replacement = event.detail.fragment && event.detail.fragment.firstElementChild;
    if (!(replacement instanceof HTMLFormElement) || replacement.id !== target.id) return;
    event.detail.shouldSwap = false;
    skippedForms.set(target, replacement.outerHTML);
  });

  document.addEventListener('htmx:afterRequest', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    formsInFlight.delete(form);
    var skipped = skippedForms.get(form);
    if (skipped !== undefined && form.isConnected) {
      skippedForms.delete(form);
      htmx.swap(form, skipped, { swapStyle: 'outerHTML' });
      return;
    }
    updatePreviewButton(form);
  });

  // The script is deferred, so the forms are parsed when it runs.
  document.querySelectorAll('form').forEach(updatePreviewButton);
})();
