document.getElementById("accept").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const error = form.querySelector(".error");
  const response = await fetch(`/api/v1/invitations/${encodeURIComponent(form.dataset.code)}/accept`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({display_name: form.display_name.value, accept_terms: form.accept_terms.checked}),
  });
  if (response.status === 201) {
    form.hidden = true;
    document.getElementById("done").hidden = false;
  } else {
    const body = await response.json().catch(() => ({}));
    error.textContent = body.message || response.statusText;
    error.hidden = false;
  }
});
