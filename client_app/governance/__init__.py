"""What a site decides and records: received study plans and approvals, patient consent,
sharing choices, the privacy budget view and the site's signed audit trail."""
