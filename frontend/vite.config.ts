/// <reference types="vitest/config" />
// Builds the visual flow editor into the Python package (linkloom/web/static/editor/), as one
// script and one stylesheet with stable names: the server versions their URLs by its own
// version and the files' hash (linkloom/web/assets.py), so no hashed file names here.
import { defineConfig } from "vite";

export default defineConfig({
  root: ".",
  publicDir: false,
  build: {
    outDir: "../linkloom/web/static/editor",
    emptyOutDir: true,
    sourcemap: false,
    minify: true,
    target: "es2022",
    cssCodeSplit: false,
    modulePreload: false,
    chunkSizeWarningLimit: 4000, // elkjs alone is 1.5 MB: one file, loaded once, then cached
    rolldownOptions: {
      input: "src/main.tsx",
      output: {
        entryFileNames: "editor.js",
        chunkFileNames: "editor-[name].js",
        assetFileNames: "editor[extname]",
      },
      onwarn(warning, warn) {
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return; // xyflow's "use client"
        warn(warning);
      },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
