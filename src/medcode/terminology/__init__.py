"""Code sets: ICD-10-CM (tabular), CPT/HCPCS (own table), categories and CMS-HCC."""
