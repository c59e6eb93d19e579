// Starts Swagger UI on /docs (api/routes/docs.py) from the locally served bundle: a file, not an
// inline script, so the page's Content-Security-Policy can forbid inline code.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    // null: Swagger UI would otherwise send the schema to validator.swagger.io for its badge.
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
  });
});
