// The package entry asc resolves for `import ... from "edgestate-sdk"`.
export * from "./assembly/index";
