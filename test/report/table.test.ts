import { describe, expect, it } from "vitest";
import { formatTable } from "../../src/report/table.ts";

describe("formatTable", () => {
  it("right-aligns numeric columns (a '-' for none included) and left-aligns the rest", () => {
    const t = formatTable(
      ["name", "loss", "n"],
      [
        ["a", "-", 3],
        ["bb", "12.5", 10],
      ],
    );
    expect(t.split("\n")).toEqual(["name  loss   n", "----  ----  --", "a        -   3", "bb    12.5  10"]);
    expect(formatTable(["x"], [["-"], ["-"]]).split("\n")[2]).toBe("-");
  });
});
