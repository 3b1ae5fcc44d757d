"""Published reference curves (`latentfit.evaluation.references`)."""

def test_the_published_vtm_curve_is_drawn_only_for_full_kodak_images():
    from latentfit.evaluation.references import KODAK_VTM_LABEL, references_for

    full = [{"image": "kodak/kodim01.png", "width": 768, "height": 512}]
    assert KODAK_VTM_LABEL in references_for(full)
    assert references_for([{"image": "kodak/kodim01.png", "width": 256, "height": 256}]) == {}
    assert references_for([{"image": "clic/x.png", "width": 768, "height": 512}]) == {}
