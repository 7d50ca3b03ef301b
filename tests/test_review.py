"""The review loop: corrections read and applied, keywords edited in a photo tool as corrections,
and the review page driven in headless Chromium (Debian's chromium and chromium-driver) to a
corrections CSV that `tag train` accepts."""

import os
import shutil

import numpy as np
import pytest

from miml_jax.tagging import corrections
from miml_jax.tagging import review
from miml_jax.plumbing.errors import UserError
from tests import conftest

LABELS = ('a', 'b')


def test_least_certain_first():
  p = np.array([[0.9, 0.01], [0.55, 0.99], [0.2, 0.7]])
  # Margins in log-odds from the thresholds (0.5, 0.6): the second image's 0.55 is nearest.
  assert review.uncertainty_order(p, [0.5, 0.6]).tolist() == [1, 2, 0]


def test_corrections_csv_is_checked_and_applied(tmp_path):
  path = tmp_path / 'fix.csv'
  extra = conftest.write_images(tmp_path / 'new', 1, np.random.default_rng(0))[0]
  path.write_text(f'image,label,value\nimg0.jpg,a,1\nimg1.png,b,1\nimg1.png,b,0\n'
                  f'{extra},a,1\n{extra},b,0\n')
  fixes = corrections.read_csv(str(path), LABELS)
  Y = np.array([[0, 0], [1, 0]], np.uint8)
  fixed, added, added_labels, counts = corrections.apply(fixes, ['img0.jpg', 'img1.png'],
                                                         ['img0.jpg', 'img1.png'], Y, LABELS)
  np.testing.assert_array_equal(fixed, [[1, 0], [1, 0]])   # the later img1 row wins
  assert added == [extra] and added_labels.tolist() == [[1, 0]]
  assert counts == {'changed': 1, 'added': 1}
  for text, message in [('img,label\n', 'starts with the header image,label,value'),
                        ('image,label,value\nx.jpg,c,1\n', "unknown label 'c'"),
                        ('image,label,value\nx.jpg,a,yes\n', "value must be 0 or 1, got 'yes'"),
                        ('image,label,value\n', 'no corrections')]:
    path.write_text(text)
    with pytest.raises(UserError, match=message):
      corrections.read_csv(str(path), LABELS)
  path.write_text(f'image,label,value\n{extra},a,1\n')
  with pytest.raises(UserError, match='needs every label; no value for b'):
    corrections.apply(corrections.read_csv(str(path), LABELS), [], [], Y[:0], LABELS)
  path.write_text('image,label,value\ngone.jpg,a,1\ngone.jpg,b,1\n')
  with pytest.raises(UserError, match='gone.jpg: no such image'):
    corrections.apply(corrections.read_csv(str(path), LABELS), [], [], Y[:0], LABELS)


def test_keywords_edited_in_a_photo_tool_are_corrections(tmp_path):
  pytest.importorskip('exiv2')
  from miml_jax.tagging import keywords
  paths = conftest.write_images(tmp_path / 'photos', 4, np.random.default_rng(1))
  for path, tags in zip(paths, (['a'], ['b'], ['a'])):
    keywords.write(path, tags)

  def edit(path, old, new):   # as a photo tool would: the sidecar's dc:subject changed
    sidecar = path + '.xmp'
    text = open(sidecar, encoding='utf-8').read()
    start, end = text.index('<dc:subject>'), text.index('</dc:subject>') + len('</dc:subject>')
    with open(sidecar, 'w', encoding='utf-8') as f:
      f.write(text[:start] + text[start:end].replace(old, new) + text[end:])

  edit(paths[0], '<rdf:li>a</rdf:li>', '<rdf:li>a</rdf:li><rdf:li>b</rdf:li>')   # b added
  edit(paths[1], '<rdf:li>b</rdf:li>', '')                                       # b deleted
  found = corrections.from_xmp(str(tmp_path / 'photos'), LABELS)
  # The third photo's sidecar is as predict wrote it (the model's guess), the fourth has none:
  # neither is a correction.
  assert found.labels == {paths[0]: {'a': 1, 'b': 1}, paths[1]: {'a': 0, 'b': 0}}


def _browser():
  webdriver = pytest.importorskip('selenium.webdriver')
  binary, driver = shutil.which('chromium'), shutil.which('chromedriver')
  if not (binary and driver):
    pytest.skip('no chromium and chromedriver (Debian: apt-get install chromium chromium-driver)')
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = binary
  for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--window-size=1200,900'):
    options.add_argument(arg)
  return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_review_page_click_exports_corrections_that_train_accepts(tmp_path):
  root = conftest.tiny_dataset(tmp_path)
  weights = tmp_path / 'w.safetensors'
  model = tmp_path / 'm.tagger'
  common = (f'--weights={weights}', '--image_size=64', '--augment=none')
  result = conftest.cli('miml_jax.tag', 'train', f'--dataset={root}', f'--output={model}',
                        '--method=l1', '--folds=2', *common)
  assert result.returncode == 0, result.stderr[-2000:]
  photos = conftest.write_images(tmp_path / 'photos', 5, np.random.default_rng(3))
  page = tmp_path / 'review.html'
  result = conftest.cli('miml_jax.tag', 'review', f'--model={model}', f'--output={page}',
                        f'--weights={weights}', '--limit=4', tmp_path / 'photos')
  assert result.returncode == 0, result.stderr[-2000:]
  assert review.made_here(str(page))
  # The same page from a predict run's rows, without extracting again.
  rows = tmp_path / 'tags.csv'
  assert conftest.cli('miml_jax.tag', 'predict', f'--model={model}', f'--weights={weights}',
                      f'--output={rows}', tmp_path / 'photos').returncode == 0
  again = tmp_path / 'again.html'
  result = conftest.cli('miml_jax.tag', 'review', f'--model={model}', f'--output={again}',
                        f'--weights={weights}', '--limit=4', f'--predictions={rows}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert again.read_text().count('"thumb":') == 4
  other = conftest.cli('miml_jax.tag', 'review', f'--model={model}', f'--output={again}',
                       f'--weights={weights}', f'--predictions={rows}', tmp_path / 'photos')
  conftest.assert_user_error(other, 'not both')
  from selenium.webdriver.common.by import By
  browser = _browser()
  try:
    browser.get(page.as_uri())
    cards = browser.find_elements(By.CSS_SELECTOR, '.card')
    assert len(cards) == 4   # --limit
    assert browser.save_screenshot(str(tmp_path / 'review.png'))
    first = cards[0].find_elements(By.CSS_SELECTOR, '.tag')[0]
    was_on = 'on' in first.get_attribute('class').split()
    first.click()
    cards[1].find_element(By.CSS_SELECTOR, '.ok').click()
    browser.find_element(By.ID, 'export').click()
    text = browser.find_element(By.ID, 'csv').get_attribute('value')
    shown = [c.find_element(By.CSS_SELECTOR, 'figcaption').text for c in cards]
  finally:
    browser.quit()
  with open(tmp_path / 'review.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  lines = text.splitlines()
  assert lines[0] == 'image,label,value' and len(lines) == 1 + 2 * len(LABELS)
  assert lines[1] == f'{shown[0]},a,{0 if was_on else 1}'   # the click switched it
  assert {line.split(',')[0] for line in lines[1:]} == set(shown[:2])
  assert set(shown) <= {os.path.abspath(p) for p in photos}
  fixes = tmp_path / 'corrections.csv'
  fixes.write_text(text)
  retrained = tmp_path / 'm2.tagger'
  result = conftest.cli('miml_jax.tag', 'train', f'--dataset={root}', f'--output={retrained}',
                        f'--corrections={fixes}', '--method=l1', '--folds=2', *common)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'corrections from' in result.stdout and '0 labels changed, 2 images added' in result.stdout
  from miml_jax import Tagger
  assert Tagger.load(retrained).info['n_images'] == 12 + 2
