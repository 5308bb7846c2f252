# Contact sheets: per context, one sheet of thumbnails captioned with their image ids
# (image_batch/report/contact_sheet.py), shown first under the context in `snakemake --report`.
#
# One job per sheet of up to 100 images (a page: image_batch.common.pages), never one per image:
# at 100,000 images that is 1,000 jobs beside the 100,000 image jobs. A sheet takes its page's
# sync digest (workflow/rules/sync.smk), not the PNGs: the digest is the one job that takes them,
# and is newer than the sheet when one of them changed. Each job keeps its thumbnails in a cache,
# so a rerun after one image changed decodes only that image. A page's member file (named by its
# content, written by a real run when missing: write_plan_file, or the digest's own job for a page
# not digested yet) makes the digest, and so the sheet, due when the sheet's title, page or
# membership changed, which --rerun-triggers mtime alone would not see.
#
# The sheets are the input sheet's: results/contact-sheets/<source>/ (source_slug: its file name
# and a digest of its path), so a run or report of another sheet in this folder, even one sharing
# a context name (and so a folder of results/images/), never makes or shows them.
import re

from image_batch.report import contact_sheet
from image_batch.sync import chunks

SHEETS = PLAN.pages  # the sync's chunks (PLAN.chunks) are these pages
SHEET_SOURCE = PLAN.source
CONTACT_SHEETS = [str(contact_sheet.sheet_path(name, SHEET_SOURCE)) for name in SHEETS]
if REPORTING:  # a report shows the sheets the last run made, of the images it made
    CONTACT_SHEETS = [path for path in CONTACT_SHEETS if Path(path).exists()]
SHEET_MEMBERS = contact_sheet.member_files(
    SHEETS, contact_sheet.contexts(PLAN.specs), SHEET_SOURCE, PLAN.digest_of, scanned=not STORAGE
)
gallery.use_sheet_members(SHEET_MEMBERS.paths)
# The names of the sheet's pages (the sync chunks): the sync's input when they changed, as the
# pages' member files are their digests' (a context's last row removed takes its page away, and
# with it a digest, which the sync would not see missing: a changed input list makes no job due).
# Compared with this sheet's own sync record, not the marker that another sheet's sync rewrites.
SYNC_PAGES = SHEET_MEMBERS.files.add(f"{SHEET_SOURCE}__pages", chunks.pages_data(PLAN.chunks), str(PLAN.sheet_record))
# The report's front page (workflow/report/workflow.rst) shows the contact sheets: the template
# gets its maker through the config, the only thing of the workflow it sees (on a report only).
if workflow.is_main_process and makes_report(sys.argv):
    config[gallery.LANDING_KEY] = gallery.landing


rule contact_sheet:
    input:
        unpack(input_function(lambda wildcards: sheet_inputs(wildcards.sheet))),
    output:
        report(
            "results/contact-sheets/{source}/{sheet}.jpg",
            caption="../report/contact_sheet.rst",
            category="Images",
            subcategory=gallery.sheet_context,
            labels=gallery.sheet_labels,
        ),
    log:
        "results/logs/contact-sheets/{source}/{sheet}.log",
    wildcard_constraints:
        source=re.escape(SHEET_SOURCE),  # this sheet's, never another's
        sheet="[a-z0-9]+(-[a-z0-9]+)*(_page[0-9]+)?",
    threads: 0  # made by the helper process of the image jobs, not in Snakemake's own
    resources:
        sheets=1,  # the `sheets` resource (workflow profile) bounds how many are made at once
    run:
        make_contact_sheet(wildcards, input, output[0], log[0])
