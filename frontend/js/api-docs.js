// GET /api/docs: Swagger UI over the generated document. A classic script (the CSP allows
// only our own files, so the initialiser cannot be inline).
/* global SwaggerUIBundle */
window.addEventListener("DOMContentLoaded", () => {
  window.linkopsApiDocs = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#api-docs",
    deepLinking: true,
    // Browsers call the API with their session cookie; state-changing calls need this header.
    requestInterceptor: (req) => {
      req.headers["X-Requested-With"] = "linkops";
      return req;
    },
  });
});
