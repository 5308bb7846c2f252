// The order in which Snakemake's HTML report lists the results of each subcategory, computed by
// the report's own code (abstract_results.js, subcategory.js), without a browser: React and the
// view managers are stubbed, since only the table's data is wanted.
//
//   node report_table.js COMPONENTS_DIR DATA_JSON
// DATA_JSON holds {"categories": ..., "results": ...} as embedded in report.html.
// Prints {category: {subcategory: [path of each row, top to bottom]}}.
"use strict";
const fs = require("fs");
const path = require("path");
const vm = require("vm");

const [componentsDir, dataFile] = process.argv.slice(2);
const data = JSON.parse(fs.readFileSync(dataFile, "utf8"));
globalThis.categories = data.categories;
globalThis.results = data.results;
globalThis.React = { Component: class { constructor(props) { this.props = props; } } };
globalThis.PropTypes = { object: {} };
globalThis.e = () => null;
globalThis.AbstractViewManager = class {};
for (const name of ["abstract_results.js", "subcategory.js"]) {
    vm.runInThisContext(fs.readFileSync(path.join(componentsDir, name), "utf8"), { filename: name });
}
const Subcategory = vm.runInThisContext("Subcategory");
const arrayKey = vm.runInThisContext("arrayKey");

const order = {};
for (const [category, subcategories] of Object.entries(data.categories)) {
    order[category] = {};
    for (const subcategory of Object.keys(subcategories)) {
        const view = new Subcategory({ category, subcategory, app: { state: {} } });
        const table = view.state.data;
        const toggles = Array.from(table.toggleLabels.keys()).map((label) => view.state.toggles.get(label));
        order[category][subcategory] = table.entryLabelValues.map(
            (labels) => table.entries.get(arrayKey(labels)).get(arrayKey(toggles))
        );
    }
}
process.stdout.write(JSON.stringify(order));
