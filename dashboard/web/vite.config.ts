// Builds the dashboard into ../static (committed, shipped as package data and served by
// spitfire-server at /). The output must not depend on the machine or the time of the build: CI
// rebuilds it and fails when it differs from what is committed.
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../static",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    // One chunk per entry keeps the first render to two requests (index.js and index.css).
    chunkSizeWarningLimit: 1000,
  },
  server: {
    // `npm run dev` against a local spitfire-server (make run).
    proxy: { "/api": "http://127.0.0.1:7880" },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
