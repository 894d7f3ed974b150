// Fixwright dashboard script: the htmx extension that shows a JSON API response as text.
// Loaded after htmx (both deferred, in document order), so `htmx` exists here.
(function () {
  'use strict';

  // Posts "{}" as JSON and shows the response (status and pretty-printed body) as escaped text,
  // because the JSON API returns data that must never be parsed as HTML.
  htmx.defineExtension('json-result', {
    onEvent: function (name, event) {
      if (name === 'htmx:configRequest') {
        event.detail.headers['Content-Type'] = 'application/json';
        event.detail.headers['Accept'] = 'application/json';
      }
      return true;
    },
    encodeParameters: function (xhr) {
      xhr.overrideMimeType('text/json');
      return '{}';
    },
    transformResponse: function (text, xhr) {
      var displayText = text;
      try {
        displayText = JSON.stringify(JSON.parse(text), null, 2);
      } catch (error) {
        // Not JSON: show the text as it came.
      }
      var wrapper = document.createElement('div');
      var status = document.createElement('p');
      status.className = xhr.status < 400 ? 'notice' : 'error';
      status.textContent = 'HTTP ' + xhr.status;
      var body = document.createElement('pre');
      body.className = 'json';
      body.textContent = displayText;
      wrapper.appendChild(status);
      wrapper.appendChild(body);
      return wrapper.innerHTML;
    },
  });
})();
