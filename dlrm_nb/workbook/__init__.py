"""The workbook layer: notebook parameters, the steps the notebooks call, pipeline, run folders, reports."""
